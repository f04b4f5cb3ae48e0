"""The synthetic MNIST generator: generator labels, determinism, caching, splits (tiny configs only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softlab.generator as sm
from softlab.data import ImageSet, load_images
from softlab.generator import (
    SyntheticMnistConfig,
    generate_synthetic_mnist,
    generator_modes,
    generator_soft_labels,
    load_synthetic_mnist,
    split_synthetic,
)

TINY = SyntheticMnistConfig.tiny()


@pytest.fixture(scope="module")
def cache_a(tmp_path_factory: pytest.TempPathFactory):
    """A private cache folder holding the tiny set, generated once for this module."""
    folder = tmp_path_factory.mktemp("cache_a")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTLAB_CACHE_DIR", str(folder))
        ds = generate_synthetic_mnist(TINY, progress=False)
    return folder, ds


# --------------------------------------------------------------------------- the generated set


def test_images_are_28x28_uint8_and_not_blank(cache_a) -> None:
    _, ds = cache_a
    assert ds.images.shape == (TINY.n_items, 28, 28) and ds.images.dtype == np.uint8
    assert 10 < ds.images.mean() < 120  # digits: mostly dark background, some ink
    assert len({img.tobytes() for img in ds.images}) == TINY.n_items  # every item is a distinct image


def test_soft_labels_have_two_nonzero_classes_given_by_pair_and_weight(cache_a) -> None:
    _, ds = cache_a
    n = TINY.n_items
    assert ds.soft_labels.shape == (n, 10) and ds.soft_labels.dtype == np.float32
    assert ds.pairs.shape == (n, 2) and np.all(ds.pairs[:, 0] != ds.pairs[:, 1])
    assert np.allclose(ds.soft_labels.sum(axis=1), 1.0, atol=1e-6)
    nonzero = (ds.soft_labels > 0).sum(axis=1)
    w = ds.weights.astype(np.float64)
    expected_nonzero = np.where((w == 0) | (w == 1), 1, 2)
    assert np.array_equal(nonzero, expected_nonzero)
    rows = np.arange(n)
    assert np.allclose(ds.soft_labels[rows, ds.pairs[:, 0]], w, atol=1e-6)
    assert np.allclose(ds.soft_labels[rows, ds.pairs[:, 1]], 1 - w, atol=1e-6)
    assert np.array_equal(ds.labels, np.where(w >= 0.5, ds.pairs[:, 0], ds.pairs[:, 1]))
    assert ds.labels.dtype == np.int64


def test_anchors_are_training_images_of_the_pair_classes(cache_a) -> None:
    _, ds = cache_a
    train = load_images("mnist", "train")
    assert np.array_equal(train.labels[ds.anchors[:, 0]], ds.pairs[:, 0])
    assert np.array_equal(train.labels[ds.anchors[:, 1]], ds.pairs[:, 1])


def test_pure_weights_decode_close_to_their_anchor(cache_a, use_cache) -> None:
    """w = 1 decodes μ(x_a) and w = 0 decodes μ(x_b): each is nearer its own anchor than the other."""
    folder, ds = cache_a
    use_cache(folder)
    gen = sm.train_generator(TINY, progress=False)
    train = load_images("mnist", "train")
    a, b = train.images[ds.anchors[:60, 0]], train.images[ds.anchors[:60, 1]]
    for w, own, other in ((1.0, a, b), (0.0, b, a)):
        img = gen.interpolate(a, b, np.full(60, w, dtype=np.float32)).astype(float)
        d_own = np.abs(img - own).mean(axis=(1, 2))
        d_other = np.abs(img - other).mean(axis=(1, 2))
        assert np.mean(d_own < d_other) >= 0.7, w


def test_same_config_gives_same_bytes_in_a_fresh_cache(cache_a, use_cache, tmp_path: Path) -> None:
    _, ds = cache_a
    use_cache(tmp_path)
    again = generate_synthetic_mnist(TINY, progress=False)
    assert not again.from_cache
    for name in ("images", "soft_labels", "labels", "pairs", "weights", "anchors"):
        assert getattr(again, name).tobytes() == getattr(ds, name).tobytes(), name


def test_another_seed_gives_other_items_without_retraining(cache_a, use_cache, forbid) -> None:
    folder, ds = cache_a
    use_cache(folder)
    forbid(sm, "_train_vae", "the generator was retrained although it is cached")
    other = generate_synthetic_mnist(SyntheticMnistConfig.tiny(seed=1), progress=False)
    assert other.images.tobytes() != ds.images.tobytes()
    assert not np.array_equal(other.weights, ds.weights)


def test_cache_hit_returns_identical_arrays_without_training(cache_a, use_cache, forbid) -> None:
    folder, ds = cache_a
    use_cache(folder)
    assert (folder / "generators" / TINY.generator_key() / "vae.npz").exists()
    assert sm.dataset_path(TINY) == folder / "synthetic-mnist" / f"{TINY.dataset_key()}.npz"
    assert sm.dataset_path(TINY).exists()
    forbid(sm, "_train_vae", "the generator was retrained although it is cached")
    hit = generate_synthetic_mnist(TINY, progress=False)
    assert hit.from_cache
    for name in ("images", "soft_labels", "labels", "pairs", "weights", "anchors", "index"):
        assert np.array_equal(getattr(hit, name), getattr(ds, name)), name


def test_generator_cache_is_reused_when_the_set_is_regenerated(cache_a, use_cache, forbid, tmp_path) -> None:
    folder, ds = cache_a
    # copy only the generator into a fresh cache: the set must be regenerated, identically, without training
    import shutil

    shutil.copytree(folder / "generators", tmp_path / "generators")
    use_cache(tmp_path)
    forbid(sm, "_train_vae", "the generator was retrained although it is cached")
    again = generate_synthetic_mnist(TINY, progress=False)
    assert not again.from_cache
    assert again.images.tobytes() == ds.images.tobytes()


def test_generation_fields_do_not_change_the_generator_key() -> None:
    assert TINY.generator_key() == SyntheticMnistConfig.tiny(seed=5, n_items=7, weight_dist="beta").generator_key()
    assert TINY.dataset_key() != SyntheticMnistConfig.tiny(seed=5).dataset_key()
    assert TINY.generator_key() != SyntheticMnistConfig.tiny(epochs=2).generator_key()
    # an unused weight parameter does not change the key
    assert TINY.dataset_key() == SyntheticMnistConfig.tiny(weight_fixed=0.9).dataset_key()


# --------------------------------------------------------------------------- draws


def test_weight_distributions_and_class_pairs() -> None:
    labels = load_images("mnist", "train").labels
    cfg = SyntheticMnistConfig(n_items=4000, class_pairs=((3, 5), (4, 9)), orient_randomly=False)
    pairs, _, w = sm._draw_items(cfg, labels)
    assert {tuple(p) for p in pairs.tolist()} == {(3, 5), (4, 9)}
    assert 0.45 < w.mean() < 0.55 and abs(np.mean(w < 0.25) - 0.25) < 0.03  # uniform on [0, 1]
    _, _, wb = sm._draw_items(SyntheticMnistConfig(n_items=4000, weight_dist="beta", weight_concentration=8.0), labels)
    assert np.mean(np.abs(wb - 0.5)) < 0.6 * np.mean(np.abs(w - 0.5))  # Beta(8, 8) sits near 0.5
    oriented, _, _ = sm._draw_items(SyntheticMnistConfig(n_items=4000, class_pairs=((3, 5),)), labels)
    assert 0.45 < np.mean(oriented[:, 0] == 3) < 0.55  # random orientation
    _, _, wf = sm._draw_items(SyntheticMnistConfig(n_items=10, weight_dist="fixed", weight_fixed=1.0), labels)
    assert np.all(wf == 1.0)


def test_fixed_weight_one_gives_one_hot_labels() -> None:
    soft = generator_soft_labels(np.array([[2, 7], [7, 2]]), np.array([1.0, 0.0]))
    assert np.array_equal(soft[0], np.eye(10, dtype=np.float32)[2])
    assert np.array_equal(soft[1], np.eye(10, dtype=np.float32)[2])


def test_generator_soft_labels_hand_computed() -> None:
    soft = generator_soft_labels(np.array([[3, 5], [9, 0]]), np.array([0.25, 0.5]))
    expected = np.zeros((2, 10), dtype=np.float32)
    expected[0, 3], expected[0, 5] = 0.25, 0.75
    expected[1, 9], expected[1, 0] = 0.5, 0.5
    assert np.array_equal(soft, expected)
    assert generator_modes(np.array([[3, 5], [9, 0]]), np.array([0.25, 0.5])).tolist() == [5, 9]  # tie → a


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.floats(0, 1)), min_size=1, max_size=30)
    .map(lambda rows: [r for r in rows if r[0] != r[1]])
    .filter(bool)
)
def test_generator_soft_labels_properties(rows) -> None:
    pairs = np.array([[a, b] for a, b, _ in rows])
    w = np.array([x for _, _, x in rows])
    soft = generator_soft_labels(pairs, w)
    assert np.allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert np.all((soft > 0).sum(axis=1) <= 2)
    assert np.all(soft >= 0)
    modes = generator_modes(pairs, w)
    assert np.all(soft[np.arange(len(w)), modes] >= soft.max(axis=1) - 1e-6)


def test_bad_input_raises_value_error_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="weight_dist"):
        SyntheticMnistConfig(weight_dist="normal")
    with pytest.raises(ValueError, match="class_pairs"):
        SyntheticMnistConfig(class_pairs=((3, 3),))
    with pytest.raises(ValueError, match="n_items"):
        SyntheticMnistConfig(n_items=0)
    with pytest.raises(ValueError, match="pairs"):
        generator_soft_labels(np.array([[1, 1]]), np.array([0.5]))
    with pytest.raises(ValueError, match="weights"):
        generator_soft_labels(np.array([[1, 2]]), np.array([1.5]))


# --------------------------------------------------------------------------- splits, image sets


def test_split_is_disjoint_stratified_and_seeded(cache_a) -> None:
    _, ds = cache_a
    train, test = split_synthetic(ds, test_fraction=0.25, seed=3)
    assert set(train.index) & set(test.index) == set()
    assert sorted(set(train.index) | set(test.index)) == list(range(len(ds)))
    assert abs(len(test) - 0.25 * len(ds)) <= 1
    key = lambda s: np.sort(s.pairs, axis=1) @ np.array([10, 1])  # noqa: E731
    for k in np.unique(key(ds)):
        n_k = int(np.sum(key(ds) == k))
        assert abs(int(np.sum(key(test) == k)) - 0.25 * n_k) <= 1
    assert train.split == "train" and test.split == "test"
    again, _ = split_synthetic(ds, test_fraction=0.25, seed=3)
    assert np.array_equal(again.index, train.index)
    np.testing.assert_array_equal(test.images, ds.images[test.index])


def test_to_imageset_and_loader(cache_a, use_cache) -> None:
    folder, ds = cache_a
    use_cache(folder)
    imgs = ds.to_imageset()
    assert isinstance(imgs, ImageSet) and imgs.dataset == "synthetic-mnist"
    assert np.array_equal(imgs.labels, ds.labels) and imgs.as_float().shape == (len(ds), 1, 28, 28)
    test = load_synthetic_mnist("test", TINY, progress=False)
    assert test.dataset == "synthetic-mnist" and test.split == "test"
    assert 0 < len(test) < len(ds)
    with pytest.raises(ValueError, match="split"):
        load_synthetic_mnist("validation", TINY)
