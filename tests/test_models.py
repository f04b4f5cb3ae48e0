"""Models: architecture, seeded initialisation, and the stacked (many-member) forward pass
checked against independent per-member ``nn.Module``s (values and gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from softlab.models import (
    ModelConfig,
    build_model,
    count_params,
    flat_features,
    init_model,
    init_params,
    param_shapes,
    stack_params,
    stacked_forward,
    unstack_params,
)

REFERENCE_CNN = ModelConfig("cnn")


def test_reference_cnn_architecture_is_the_documented_one():
    shapes = dict(param_shapes(REFERENCE_CNN))
    assert shapes == {
        "conv1.weight": (16, 1, 3, 3),
        "conv1.bias": (16,),
        "conv2.weight": (32, 16, 3, 3),
        "conv2.bias": (32,),
        "fc1.weight": (128, 1568),
        "fc1.bias": (128,),
        "out.weight": (10, 128),
        "out.bias": (10,),
    }
    # hand count: 16*9+16 + 32*16*9+32 + 1568*128+128 + 128*10+10
    assert count_params(REFERENCE_CNN) == 160 + 4640 + 200832 + 1290
    model = build_model(REFERENCE_CNN)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (3, 3), (1, 1)),
        (16, 32, (3, 3), (1, 1)),
    ]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 2
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig("mlp"),
        ModelConfig("mlp", depth=3, hidden=32, dropout=0.5),
        REFERENCE_CNN,
        ModelConfig("cnn", width=8, depth=3, hidden=64, dropout=0.2),
        ModelConfig("cnn", width=4, depth=1, in_shape=(3, 9, 7), n_classes=4),
    ],
)
def test_build_model_matches_param_shapes(cfg: ModelConfig):
    model = build_model(cfg)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == dict(param_shapes(cfg))
    assert sum(p.numel() for p in model.parameters()) == count_params(cfg)
    out = model(torch.zeros(3, *cfg.in_shape))
    assert out.shape == (3, cfg.n_classes)
    assert (sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) > 0) == (cfg.dropout > 0)


def test_flat_features_for_odd_sizes():
    # 28 -> 14 -> 7 -> 3 (floor), 64 channels at depth 3 with width 16
    assert flat_features(ModelConfig("cnn", depth=3)) == 64 * 3 * 3
    assert flat_features(ModelConfig("mlp", in_shape=(3, 5, 5))) == 75


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"kind": "rnn"}, "kind"),
        ({"kind": "mlp", "hidden": 0}, "hidden"),
        ({"kind": "mlp", "dropout": 1.0}, "dropout"),
        ({"kind": "cnn", "depth": 6}, "depth"),
        ({"kind": "mlp", "in_shape": (28, 28)}, "in_shape"),
        ({"kind": "mlp", "n_classes": 1}, "n_classes"),
    ],
)
def test_bad_model_config_names_the_parameter(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ModelConfig(**kwargs)


def test_model_config_round_trips_through_dict():
    cfg = ModelConfig("cnn", width=8, dropout=0.25, in_shape=(1, 16, 16))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_init_params_depend_only_on_seed_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = init_params(REFERENCE_CNN, 7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # a different global state must not matter
    b = init_params(REFERENCE_CNN, 7)
    c = init_params(REFERENCE_CNN, 8)
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["conv2.weight"], c["conv2.weight"])
    with pytest.raises(ValueError, match="seed"):
        init_params(REFERENCE_CNN, -1)


def test_init_params_follow_the_uniform_fan_in_rule():
    p = init_params(REFERENCE_CNN, 0)
    for name, fan_in in [
        ("conv1.weight", 9),
        ("conv2.weight", 144),
        ("fc1.weight", 1568),
        ("fc1.bias", 1568),
        ("out.weight", 128),
    ]:
        bound = 1 / np.sqrt(fan_in)
        t = p[name].numpy()
        assert np.abs(t).max() <= bound
        if t.size > 1000:  # U(-b, b): mean 0, variance b^2 / 3
            assert abs(t.mean()) < 0.05 * bound
            assert abs(t.var() / (bound**2 / 3) - 1) < 0.05
    model = init_model(REFERENCE_CNN, 0)
    assert torch.equal(model.state_dict()["fc1.weight"], p["fc1.weight"])


def test_stack_and_unstack_are_inverse():
    ps = [init_params(ModelConfig("mlp", hidden=8), s) for s in range(3)]
    st_ = stack_params(ps)
    assert st_["fc1.weight"].shape == (3, 8, 784)
    for i in range(3):
        for k, v in unstack_params(st_, i).items():
            assert torch.equal(v, ps[i][k])


def _compare_with_modules(cfg: ModelConfig, n_members: int, batch: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((n_members, batch, *cfg.in_shape), generator=gen)
    x[:, :, :, : cfg.in_shape[1] // 3] = 0.0  # constant regions create exact max-pool ties
    t = torch.softmax(torch.randn((n_members, batch, cfg.n_classes), generator=gen), -1)
    seeds = [seed + 10 * i for i in range(n_members)]
    stacked = {k: v.requires_grad_() for k, v in stack_params([init_params(cfg, s) for s in seeds]).items()}
    logits = stacked_forward(cfg, stacked, x)
    (-(t * F.log_softmax(logits, -1)).sum(-1).mean(-1)).sum().backward()
    for m, s in enumerate(seeds):
        model = init_model(cfg, s).eval()
        ref = model(x[m])
        torch.testing.assert_close(logits[m].detach(), ref.detach(), atol=1e-5, rtol=1e-5)
        F.cross_entropy(ref, t[m]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(stacked[name].grad[m], p.grad, atol=1e-5, rtol=1e-4, msg=f"{name} member {m}")


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["mlp", "cnn"]),
    width=st.integers(1, 6),
    depth=st.integers(1, 3),
    hidden=st.integers(1, 20),
    n_members=st.integers(1, 4),
    batch=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_stacked_forward_and_gradients_match_per_member_modules(kind, width, depth, hidden, n_members, batch, seed):
    cfg = ModelConfig(kind, width=width, depth=depth, hidden=hidden, in_shape=(2, 12, 10), n_classes=5)
    _compare_with_modules(cfg, n_members, batch, seed)


def test_stacked_forward_matches_reference_cnn_and_mlp():
    _compare_with_modules(REFERENCE_CNN, 3, 8, 0)
    _compare_with_modules(ModelConfig("mlp"), 3, 8, 1)


def test_members_do_not_interact():
    cfg = ModelConfig("cnn", width=4, hidden=16)
    stacked = stack_params([init_params(cfg, s) for s in range(3)])
    x = torch.rand(3, 4, 1, 28, 28)
    y = stacked_forward(cfg, stacked, x)
    x2 = x.clone()
    x2[1] = float("nan")  # even NaN in one member's batch stays in that member
    y2 = stacked_forward(cfg, stacked, x2)
    assert torch.equal(y[0], y2[0]) and torch.equal(y[2], y2[2])
    assert torch.isnan(y2[1]).all()


def test_dropout_masks_scale_hidden_units():
    cfg = ModelConfig("mlp", depth=1, hidden=6, dropout=0.5)
    stacked = stack_params([init_params(cfg, s) for s in range(2)])
    x = torch.rand(2, 3, 1, 28, 28)
    ones = [torch.ones(2, 3, 6)]
    torch.testing.assert_close(stacked_forward(cfg, stacked, x, ones), stacked_forward(cfg, stacked, x))
    zeros = [torch.zeros(2, 3, 6)]  # every hidden unit dropped: logits are the output bias
    out = stacked_forward(cfg, stacked, x, zeros)
    torch.testing.assert_close(out, stacked["out.bias"].unsqueeze(1).expand(2, 3, 10))


# ------------------------------------------------------------------------------ input shapes

CIFAR_SHAPE = (3, 32, 32)


def test_default_input_shape_keeps_config_dicts_and_cache_keys():
    """Golden values from before colour inputs existed: the default (1, 28, 28) must keep every
    existing run's configuration dict and cache key (``softlab.store`` hashes ``key_dict()``)."""
    from softlab.io import config_key
    from softlab.train import TrainConfig

    assert ModelConfig("mlp", hidden=64).to_dict() == {
        "kind": "mlp",
        "hidden": 64,
        "width": 16,
        "depth": 2,
        "dropout": 0.0,
        "n_classes": 10,
        "in_shape": [1, 28, 28],
    }
    smoke = TrainConfig(model=ModelConfig("mlp", hidden=64), epochs=3, batch_size=64, lr=0.002)
    assert config_key(smoke.key_dict()) == "3fe887e9c07b7ea2"
    paper = TrainConfig(model=REFERENCE_CNN, epochs=3, batch_size=64, lr=0.002)
    assert config_key(paper.key_dict()) == "2e2824a78949e352"
    assert ModelConfig("cnn", in_shape=CIFAR_SHAPE).to_dict()["in_shape"] == [3, 32, 32]
    assert (
        config_key(
            TrainConfig(model=ModelConfig("cnn", in_shape=CIFAR_SHAPE), epochs=3, batch_size=64, lr=0.002).key_dict()
        )
        != "2e2824a78949e352"
    )


def test_reference_cnn_and_mlp_on_cifar_inputs():
    cnn = ModelConfig("cnn", in_shape=CIFAR_SHAPE)
    shapes = dict(param_shapes(cnn))
    # 32 -> 16 -> 8 after two 2×2 pools: 32 channels · 8 · 8 = 2048 features
    assert shapes["conv1.weight"] == (16, 3, 3, 3) and shapes["conv2.weight"] == (32, 16, 3, 3)
    assert shapes["fc1.weight"] == (128, 2048) and flat_features(cnn) == 2048
    assert count_params(cnn) == (16 * 27 + 16) + (32 * 144 + 32) + (2048 * 128 + 128) + (128 * 10 + 10)
    assert init_model(cnn, 0)(torch.zeros(2, *CIFAR_SHAPE)).shape == (2, 10)
    mlp = ModelConfig("mlp", in_shape=CIFAR_SHAPE)
    assert dict(param_shapes(mlp))["fc1.weight"] == (128, 3072)
    # fan-in of the first conv counts all three input channels: 3 · 3 · 3
    assert init_params(cnn, 0)["conv1.weight"].abs().max() <= 1 / np.sqrt(27)


def test_stacked_forward_matches_modules_on_cifar_inputs():
    _compare_with_modules(ModelConfig("cnn", in_shape=CIFAR_SHAPE), 3, 4, 2)
    _compare_with_modules(ModelConfig("mlp", in_shape=CIFAR_SHAPE, hidden=32), 3, 4, 3)


@pytest.mark.parametrize("in_shape", [(1, 28, 28), CIFAR_SHAPE])
def test_grouped_convolution_keeps_members_channels_apart(in_shape):
    # members' input channels are stacked for one grouped convolution: with 3 channels a wrong
    # grouping would mix member 0's blue plane into member 1
    cfg = ModelConfig("cnn", width=4, hidden=16, in_shape=in_shape)
    stacked = stack_params([init_params(cfg, s) for s in range(3)])
    x = torch.rand(3, 4, *in_shape)
    y = stacked_forward(cfg, stacked, x)
    for c in range(in_shape[0]):
        x2 = x.clone()
        x2[1, :, c] = float("nan")
        y2 = stacked_forward(cfg, stacked, x2)
        assert torch.equal(y[0], y2[0]) and torch.equal(y[2], y2[2]) and torch.isnan(y2[1]).all()
