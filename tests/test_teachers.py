"""Teachers: out-of-sample probabilities, caching, determinism, the cleanlab-cv source (tiny configs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax as scipy_softmax

import softlab.teachers as teachers
from softlab.data import load_images
from softlab.teachers import (
    TeacherConfig,
    cleanlab_cv_probs,
    softmax,
    synthetic_probs,
    teacher_dir,
    teacher_probs,
    teacher_probs_on,
    train_teacher,
)

TINY = TeacherConfig.tiny()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A tiny MNIST teacher in a private cache, with a record of the data its training loop saw."""
    folder = tmp_path_factory.mktemp("teachers")
    seen: dict[str, torch.Tensor] = {}
    real = teachers.train_members

    def spy(x, members, cfg, **kwargs):
        (member,) = members
        idx = member.train_idx
        seen["x"] = torch.from_numpy(x[idx].copy())
        seen["y"] = torch.from_numpy(member.targets[idx].argmax(axis=1))
        assert np.array_equal(member.targets[idx].max(axis=1), np.ones(len(idx), dtype=np.float32))  # one-hot
        return real(x, members, cfg, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTLAB_CACHE_DIR", str(folder))
        mp.setattr(teachers, "train_members", spy)
        teacher = train_teacher("mnist", TINY)
        probs = teacher_probs("mnist", "test", TINY)
    return folder, teacher, probs, seen


def test_probs_on_the_pool_are_distributions_in_item_order(trained) -> None:
    _, _, probs, _ = trained
    test = load_images("mnist", "test")
    assert probs.shape == (len(test), 10) and probs.dtype == np.float32
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # aligned with the test items: far better than chance (10%) against their labels
    assert np.mean(probs.argmax(axis=1) == test.labels) > 0.6
    assert np.mean(probs.argmax(axis=1) == np.roll(test.labels, 1)) < 0.3


def test_teacher_is_trained_on_a_seeded_subsample_of_the_train_split_only(trained) -> None:
    _, teacher, _, seen = trained
    train = load_images("mnist", "train")
    idx = teacher.train_indices
    assert idx.shape == (TINY.n_train,) and np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < len(train)
    expected = np.sort(np.random.default_rng(TINY.seed).choice(len(train), size=TINY.n_train, replace=False))
    assert np.array_equal(idx, expected)
    # the tensors the training loop saw are exactly these training images and their official labels
    assert np.array_equal(seen["x"].numpy(), train.images[idx][:, None].astype(np.float32) / 255.0)
    assert np.array_equal(seen["y"].numpy(), train.labels[idx])
    assert teacher.meta["train_split"] == "train" and teacher.meta["dataset"] == "mnist"
    assert teacher.meta["n_train"] == TINY.n_train
    assert teacher.meta["config"]["train_split"] == "train"


def test_in_sample_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="pool"):
        teacher_probs("mnist", "train", TINY)
    with pytest.raises(ValueError, match="pool"):
        synthetic_probs("mnist", "teacher", pool="validation")


def test_cache_hit_returns_identical_probs_without_training(trained, use_cache, forbid) -> None:
    folder, teacher, probs, _ = trained
    use_cache(folder)
    assert teacher_dir(TINY) == folder / "teachers" / TINY.key()
    for name in ("weights.npz", "train_indices.npz", "meta.json", "logits_test.npz"):
        assert (teacher_dir(TINY) / name).exists(), name
    forbid(teachers, "train_members", "the teacher was retrained although it is cached")
    assert np.array_equal(teacher_probs("mnist", "test", TINY), probs)
    # without the logits file, the cached weights recompute the same numbers, still without training
    (teacher_dir(TINY) / "logits_test.npz").unlink()
    again = train_teacher("mnist", TINY)
    assert again.from_cache and np.array_equal(again.train_indices, teacher.train_indices)
    assert np.allclose(teacher_probs("mnist", "test", TINY), probs, atol=1e-6)
    assert json.loads((teacher_dir(TINY) / "meta.json").read_text())["n_train"] == TINY.n_train


def test_incomplete_cache_entry_is_retrained(trained, use_cache, tmp_path) -> None:
    import shutil

    folder, _, probs, _ = trained
    shutil.copytree(folder / "teachers", tmp_path / "teachers")
    use_cache(tmp_path)
    (teacher_dir(TINY) / "meta.json").unlink()  # an interrupted write leaves no meta.json
    (teacher_dir(TINY) / "logits_test.npz").unlink()
    retrained = train_teacher("mnist", TINY)
    assert not retrained.from_cache
    # same configuration, same seed, fresh training ⇒ same numbers
    assert np.array_equal(teacher_probs("mnist", "test", TINY), probs)


def test_different_seed_gives_a_different_teacher(trained, use_cache) -> None:
    folder, teacher, _, _ = trained
    use_cache(folder)
    other = train_teacher("mnist", TeacherConfig.tiny(seed=1))
    assert not np.array_equal(other.train_indices, teacher.train_indices)
    assert TeacherConfig.tiny(seed=1).key() != TINY.key()


def test_probs_on_generated_images(trained, use_cache, forbid) -> None:
    folder, teacher, _, _ = trained
    use_cache(folder)
    forbid(teachers, "train_members", "the teacher was retrained although it is cached")
    images = load_images("mnist", "test").images[:50]
    p = teacher_probs_on(images, TINY)
    assert p.shape == (50, 10) and p.dtype == np.float32 and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(p, softmax(teacher.logits(images)))
    with pytest.raises(ValueError, match="images"):
        teacher_probs_on(images.astype(np.float32), TINY)


def test_generator_teacher_agreement_on_tiny_synthetic_set(trained, use_cache) -> None:
    from softlab.generator import SyntheticMnistConfig, generate_synthetic_mnist
    from softlab.metrics import generator_teacher_agreement

    folder, _, _, _ = trained
    use_cache(folder)
    ds = generate_synthetic_mnist(SyntheticMnistConfig.tiny(n_items=50), progress=False)
    out = generator_teacher_agreement(ds.soft_labels, teacher_probs_on(ds.images, TINY))
    assert 0.0 <= out["mode_agreement"] <= 1.0 and 0.0 <= out["mean_total_variation"] <= 1.0
    assert out["n_items"] == 50


def test_dataset_argument_overrides_config() -> None:
    assert teachers._resolve("fashion-mnist", TINY).dataset == "fashion-mnist"
    assert teachers._resolve(None, TINY).dataset == "mnist"
    assert teachers._resolve("fashion-mnist", TINY).key() != TINY.key()
    with pytest.raises(ValueError, match="dataset"):
        teachers._resolve("kmnist", TINY)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="model"):
        TeacherConfig(model="resnet")
    with pytest.raises(ValueError, match="n_train"):
        TeacherConfig(n_train=0)
    with pytest.raises(ValueError, match="epochs"):
        TeacherConfig(epochs=0)


def test_cnn_model_shapes() -> None:
    model = teachers._make_model(TeacherConfig(model="cnn", hidden=16))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


# --------------------------------------------------------------------------- softmax


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.floats(0.1, 10.0), st.integers(0, 10_000))
def test_softmax_matches_scipy(n: int, temperature: float, seed: int) -> None:
    logits = np.random.default_rng(seed).normal(scale=20.0, size=(n, 10))
    got = softmax(logits, temperature)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scipy_softmax(logits / temperature, axis=-1), atol=1e-6)


# --------------------------------------------------------------------------- cleanlab-cv


def test_cleanlab_cv_is_aligned_with_mnist_test() -> None:
    from softlab.data import load_mnist_cleanlab_probs

    probs, original = load_mnist_cleanlab_probs()
    test = load_images("mnist", "test")
    assert np.array_equal(original, test.labels)  # original labels match the MNIST test labels, item by item
    cv = synthetic_probs("mnist", source="cleanlab-cv")
    assert np.array_equal(cv, cleanlab_cv_probs()) and np.array_equal(cv, probs)
    assert cv.shape == (10000, 10) and cv.dtype == np.float32
    assert np.allclose(cv.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(cv.argmax(axis=1) == test.labels) > 0.98


def test_cleanlab_cv_misalignment_is_detected(monkeypatch) -> None:
    probs, original = teachers.load_mnist_cleanlab_probs()
    monkeypatch.setattr(teachers, "load_mnist_cleanlab_probs", lambda download=True: (probs, np.roll(original, 1)))
    with pytest.raises(ValueError, match="aligned"):
        cleanlab_cv_probs()


def test_synthetic_source_validation() -> None:
    with pytest.raises(ValueError, match="source"):
        synthetic_probs("mnist", source="smooth")
    with pytest.raises(ValueError, match="dataset"):
        synthetic_probs("fashion-mnist", source="cleanlab-cv")


def test_teachers_trained_together_equal_teachers_trained_alone(use_cache, forbid, tmp_path, monkeypatch) -> None:
    """``train_teachers`` trains the missing teachers of several seeds in one batched call; each is
    the teacher it would have been alone (same weights), is cached, and a second call trains nothing."""
    from softlab.teachers import train_teachers

    cfgs = [TeacherConfig.tiny(seed=s, n_train=1000) for s in (3, 4)]
    use_cache(tmp_path / "alone")
    alone = [train_teacher("mnist", c) for c in cfgs]
    use_cache(tmp_path / "together")
    calls: list[int] = []
    real = teachers.train_members

    def count(x, members, cfg, **kwargs):
        calls.append(len(members))
        return real(x, members, cfg, **kwargs)

    monkeypatch.setattr(teachers, "train_members", count)
    together = train_teachers(cfgs + [cfgs[0]])  # a repeated configuration is trained once
    assert calls == [2] and len(together) == 3
    images = load_images("mnist", "test").images[:200]
    for a, b in zip(alone, together):
        assert np.array_equal(a.train_indices, b.train_indices)
        np.testing.assert_allclose(a.logits(images), b.logits(images), atol=1e-5)
    assert not np.allclose(together[0].logits(images), together[1].logits(images))
    forbid(teachers, "train_members", "the teacher was retrained although it is cached")
    assert all(t.from_cache for t in train_teachers(cfgs))
