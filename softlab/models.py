"""Classifiers: an MLP and a small CNN, as plain ``nn.Module`` objects and as *stacked* functions.

Two views of the same models:

* ``build_model(cfg)`` — an ordinary ``torch.nn.Module`` for one model (used by the plain
  reference loop, teachers and anything that wants a normal module).
* ``stacked_forward(cfg, params, x)`` — the forward pass of ``M`` models at once. Every
  parameter carries a leading member axis (``params[name].shape == (M, *shape)``) and every
  member sees its own batch ``x[m]``. The trainer (``softlab.train``) uses it to train many
  seeds/conditions/folds as one batched computation.

Architectures (``ModelConfig``):

* ``"mlp"``: flatten → ``depth`` × [Linear(·, hidden) → ReLU → Dropout(dropout)] →
  Linear(hidden, n_classes).
* ``"cnn"``: ``depth`` × [Conv2d(·, width·2^i, 3×3, padding 1) → ReLU → MaxPool 2×2] →
  flatten → Linear(·, hidden) → ReLU → Dropout(dropout) → Linear(hidden, n_classes).
  With the defaults (width 16, depth 2, hidden 128, input 1×28×28) this is the reference CNN:
  conv 1→16, pool, conv 16→32, pool, linear 1568→128, linear 128→10.

Parameter names are those of ``build_model(cfg).state_dict()`` (``conv1.weight``,
``fc1.bias``, ``out.weight`` …).

Initial weights (``init_params(cfg, seed)``) depend only on ``(cfg, seed)``: they are drawn
from a private ``torch.Generator`` seeded with ``seed`` (the global RNG is never touched),
layer by layer in ``param_shapes`` order, with PyTorch's default rule for ``Linear``/``Conv2d``:
weight and bias ~ U(−1/√fan_in, 1/√fan_in), fan_in = in_features (· kernel area).

Speed notes for ``stacked_forward`` (``benchmarks/bench_trainer.py`` measures them on the machine
at hand): convolutions run as ONE grouped convolution (``groups = M``, members' channels stacked)
in channels-last memory layout, where max-pool is much faster than in NCHW on CPU; max-pool is
applied *before* the ReLU (``relu∘maxpool ≡ maxpool∘relu`` exactly, values and gradients,
because ReLU is monotone) so the ReLU touches 4× fewer elements; linear layers are batched
matrix products (``baddbmm``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

ModelKind = Literal["mlp", "cnn"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a classifier.

    kind: ``"mlp"`` or ``"cnn"``.
    hidden: units of each hidden fully connected layer.
    width: channels of the first conv block (doubled at each further block; CNN only).
    depth: hidden layers (MLP) or conv blocks (CNN).
    dropout: dropout probability after each hidden fully connected layer (0 = none).
    n_classes: output classes.
    in_shape: (channels, height, width) of one input image.
    """

    kind: ModelKind
    hidden: int = 128
    width: int = 16
    depth: int = 2
    dropout: float = 0.0
    n_classes: int = 10
    in_shape: tuple[int, int, int] = (1, 28, 28)

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "cnn"):
            raise ValueError(f"ModelConfig.kind: expected 'mlp' or 'cnn', got {self.kind!r}")
        for name in ("hidden", "width", "depth", "n_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name}: expected a positive int, got {value!r}")
        if self.n_classes < 2:
            raise ValueError(f"ModelConfig.n_classes: expected at least 2 classes, got {self.n_classes}")
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ValueError(f"ModelConfig.dropout: expected a probability in [0, 1), got {self.dropout!r}")
        shape = tuple(self.in_shape)
        if len(shape) != 3 or any((not isinstance(s, int)) or s < 1 for s in shape):
            raise ValueError(
                f"ModelConfig.in_shape: expected (channels, height, width) positive ints, got {self.in_shape!r}"
            )
        object.__setattr__(self, "in_shape", shape)
        if self.kind == "cnn":
            h, w = shape[1], shape[2]
            for _ in range(self.depth):
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ValueError(
                    f"ModelConfig.depth: {self.depth} pooling blocks shrink a {shape[1]}x{shape[2]} image to nothing"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``in_shape`` as a list) that ``ModelConfig.from_dict`` inverts."""
        d = asdict(self)
        d["in_shape"] = list(self.in_shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        d = dict(d)
        if "in_shape" in d:
            d["in_shape"] = tuple(d["in_shape"])
        return cls(**d)


def conv_channels(cfg: ModelConfig) -> list[int]:
    """Output channels of each conv block: ``width · 2^i`` for i = 0 … depth−1."""
    return [cfg.width * 2**i for i in range(cfg.depth)]


def flat_features(cfg: ModelConfig) -> int:
    """Number of features entering the first fully connected layer."""
    c, h, w = cfg.in_shape
    if cfg.kind == "mlp":
        return c * h * w
    for _ in range(cfg.depth):
        h, w = h // 2, w // 2
    return conv_channels(cfg)[-1] * h * w


def param_shapes(cfg: ModelConfig) -> OrderedDict[str, tuple[int, ...]]:
    """Parameter names (as in ``build_model(cfg).state_dict()``) and shapes, in init order."""
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    if cfg.kind == "mlp":
        fan = flat_features(cfg)
        for i in range(cfg.depth):
            shapes[f"fc{i + 1}.weight"] = (cfg.hidden, fan)
            shapes[f"fc{i + 1}.bias"] = (cfg.hidden,)
            fan = cfg.hidden
    else:
        c_in = cfg.in_shape[0]
        for i, c_out in enumerate(conv_channels(cfg)):
            shapes[f"conv{i + 1}.weight"] = (c_out, c_in, 3, 3)
            shapes[f"conv{i + 1}.bias"] = (c_out,)
            c_in = c_out
        shapes["fc1.weight"] = (cfg.hidden, flat_features(cfg))
        shapes["fc1.bias"] = (cfg.hidden,)
    shapes["out.weight"] = (cfg.n_classes, cfg.hidden)
    shapes["out.bias"] = (cfg.n_classes,)
    return shapes


def build_model(cfg: ModelConfig) -> nn.Module:
    """An ``nn.Sequential`` for one model (weights from PyTorch's default init; see ``init_model``)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if cfg.kind == "mlp":
        layers["flatten"] = nn.Flatten()
        fan = flat_features(cfg)
        for i in range(cfg.depth):
            layers[f"fc{i + 1}"] = nn.Linear(fan, cfg.hidden)
            layers[f"relu{i + 1}"] = nn.ReLU()
            if cfg.dropout > 0:
                layers[f"drop{i + 1}"] = nn.Dropout(cfg.dropout)
            fan = cfg.hidden
    else:
        c_in = cfg.in_shape[0]
        for i, c_out in enumerate(conv_channels(cfg)):
            layers[f"conv{i + 1}"] = nn.Conv2d(c_in, c_out, 3, padding=1)
            layers[f"crelu{i + 1}"] = nn.ReLU()
            layers[f"pool{i + 1}"] = nn.MaxPool2d(2)
            c_in = c_out
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = nn.Linear(flat_features(cfg), cfg.hidden)
        layers["relu1"] = nn.ReLU()
        if cfg.dropout > 0:
            layers["drop1"] = nn.Dropout(cfg.dropout)
    layers["out"] = nn.Linear(cfg.hidden, cfg.n_classes)
    return nn.Sequential(layers)


def init_params(cfg: ModelConfig, seed: int) -> OrderedDict[str, torch.Tensor]:
    """Initial float32 CPU parameters for ``seed``: U(−1/√fan_in, 1/√fan_in) for every tensor.

    fan_in is ``shape[1] · kernel area`` of the layer's weight. Depends only on (cfg, seed).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    gen = torch.Generator().manual_seed(seed)
    shapes = param_shapes(cfg)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, shape in shapes.items():
        weight_shape = shapes[name.rsplit(".", 1)[0] + ".weight"]
        fan_in = 1
        for s in weight_shape[1:]:
            fan_in *= s
        bound = 1.0 / fan_in**0.5
        out[name] = (torch.rand(shape, generator=gen, dtype=torch.float32) * 2.0 - 1.0) * bound
    return out


def init_model(cfg: ModelConfig, seed: int) -> nn.Module:
    """``build_model(cfg)`` with the weights of ``init_params(cfg, seed)``."""
    model = build_model(cfg)
    model.load_state_dict(init_params(cfg, seed))
    return model


def stack_params(per_member: list[dict[str, torch.Tensor]]) -> OrderedDict[str, torch.Tensor]:
    """Stack member parameter dicts along a new leading member axis."""
    if not per_member:
        raise ValueError("per_member: expected at least one parameter dict")
    names = list(per_member[0])
    return OrderedDict((n, torch.stack([p[n] for p in per_member])) for n in names)


def unstack_params(stacked: dict[str, torch.Tensor], member: int) -> OrderedDict[str, torch.Tensor]:
    """Parameters of one member (views) from stacked parameters."""
    return OrderedDict((n, t[member]) for n, t in stacked.items())


class _StackedLinear(torch.autograd.Function):
    """y = h @ Wᵀ + b per member, with a backward that writes ∂W straight in (M, out, in) layout.

    (Autograd's generic backward of ``baddbmm(b, h, W.transpose(1, 2))`` computes ∂Wᵀ and then
    copies it transposed: a strided copy that cost as much as the matrix product itself.)
    """

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(h, weight)
        return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, weight = ctx.saved_tensors
        grad_h = torch.bmm(grad_out, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad_out.transpose(1, 2), h) if ctx.needs_input_grad[1] else None
        grad_b = grad_out.sum(1) if ctx.needs_input_grad[2] else None
        return grad_h, grad_w, grad_b


def _stacked_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """h (M, B, in) @ weightᵀ (M, in, out) + bias (M, out)  →  (M, B, out)."""
    device_type = h.device.type
    if torch.is_autocast_enabled(device_type):
        # autocast does not reach into an autograd.Function: cast here (the casts are recorded, so
        # ∂weight and ∂bias come back in float32), then run the same product in the low precision.
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type=device_type, enabled=False):
            return _stacked_linear(h.to(dtype), weight.to(dtype), bias.to(dtype))
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad or bias.requires_grad):
        return _StackedLinear.apply(h, weight, bias)
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def stacked_forward(
    cfg: ModelConfig,
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    dropout_masks: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits of M models on their own batches: x (M, B, C, H, W) → (M, B, n_classes).

    ``params[name]`` has shape ``(M, *param_shapes(cfg)[name])``. ``dropout_masks`` (training with
    dropout only): one tensor per hidden fully connected layer, shaped (M, B, hidden), holding
    0 or 1/(1−p) (inverted dropout); ``None`` means evaluation mode (no dropout).
    Member m's output depends only on ``x[m]`` and member m's parameters.
    """
    if x.dim() != 5:
        raise ValueError(f"x: expected (members, batch, channels, height, width), got shape {tuple(x.shape)}")
    n_members, batch = x.shape[0], x.shape[1]
    n_drop = 0
    if cfg.kind == "mlp":
        h = x.reshape(n_members, batch, -1)
        for i in range(cfg.depth):
            h = F.relu(_stacked_linear(h, params[f"fc{i + 1}.weight"], params[f"fc{i + 1}.bias"]))
            if dropout_masks is not None:
                h = h * dropout_masks[n_drop]
                n_drop += 1
        return _stacked_linear(h, params["out.weight"], params["out.bias"])

    c_in, height, width = x.shape[2], x.shape[3], x.shape[4]
    # (M, B, C, H, W) -> (B, M*C, H, W) with members' channels stacked, channels-last memory.
    h = x.permute(1, 0, 2, 3, 4).reshape(batch, n_members * c_in, height, width)
    h = h.contiguous(memory_format=torch.channels_last)
    for i in range(cfg.depth):
        w = params[f"conv{i + 1}.weight"]
        b = params[f"conv{i + 1}.bias"]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=1, groups=n_members)
        h = F.relu(F.max_pool2d(h, 2))  # == max_pool(relu(.)) exactly, on 4x fewer elements
    h = h.reshape(batch, n_members, -1).transpose(0, 1)  # (M, B, C*H*W) in NCHW flatten order
    h = F.relu(_stacked_linear(h, params["fc1.weight"], params["fc1.bias"]))
    if dropout_masks is not None:
        h = h * dropout_masks[0]
    return _stacked_linear(h, params["out.weight"], params["out.bias"])


def dropout_layer_widths(cfg: ModelConfig) -> list[int]:
    """Widths of the layers that dropout applies to (empty when ``cfg.dropout == 0``)."""
    if cfg.dropout <= 0:
        return []
    return [cfg.hidden] * (cfg.depth if cfg.kind == "mlp" else 1)


def count_params(cfg: ModelConfig) -> int:
    """Number of trainable scalars of one model."""
    total = 0
    for shape in param_shapes(cfg).values():
        n = 1
        for s in shape:
            n *= s
        total += n
    return total
