"""The synthetic MNIST generator: ambiguous digits between two classes, with a soft label known
by construction.

This module trains a torch model (a VAE) and caches it, so it sits above the data layer
(:mod:`softlab.data` only reads verified files); the generated set is handed on as an
:class:`softlab.data.ImageSet` (:meth:`SyntheticMnist.to_imageset`, :func:`load_synthetic_mnist`).

The generator
-------------
1. **A variational autoencoder (VAE) is trained on the MNIST training split**. It is a fully
   connected VAE:

   * encoder ``784 → 512 → 256 → (μ, log σ²) ∈ ℝ^d`` with ReLU activations, ``d = latent_dim``
     (default 16);
   * decoder ``ℝ^d → 256 → 512 → 784`` (ReLU), one logit per pixel;
   * loss per image: Bernoulli reconstruction term ``Σ_pixels BCE(sigmoid(logit), x)`` with
     pixel intensities ``x ∈ [0, 1]`` (``uint8 / 255``), plus ``β · KL(N(μ, σ²) ‖ N(0, I))``
     (default ``β = 1``), averaged over the mini-batch; Adam, reparameterisation
     ``z = μ + σ · ε``. Model initialisation, batch order and the noise ``ε`` all come from
     ``generator_seed``. Default: 10 epochs over all 60,000 images, batch 128, ``lr = 1e-3``
     (``meta.json`` of the cached generator records the per-epoch loss and training time).

2. **An item is a decoded interpolation between two real digits of two different classes.**
   For item ``i``: a class pair ``(a, b)``, ``a ≠ b``, is drawn uniformly from ``class_pairs``
   (default: all 45 unordered pairs; with ``orient_randomly`` each pair's order is flipped
   with probability 1/2); an *anchor* image ``x_a`` of class ``a`` and ``x_b`` of class ``b``
   are drawn uniformly from the MNIST training split; a weight ``w ∈ [0, 1]`` is drawn from
   ``weight_dist``:

   * ``"uniform"``: ``w ~ U[0, 1]``;
   * ``"beta"``: ``w ~ Beta(c, c)`` with ``c = weight_concentration`` (``c > 1`` concentrates
     ``w`` near 0.5, i.e. on the most ambiguous blends; ``c = 1`` is uniform);
   * ``"fixed"``: ``w = weight_fixed`` for every item.

   The image is ``round(255 · sigmoid(decoder(z)))`` with
   ``z = w · μ(x_a) + (1 − w) · μ(x_b)`` (linear interpolation of the posterior means).

3. **The generator's soft label** of item ``i`` is ``w`` on class ``a`` and ``1 − w`` on class
   ``b`` (zero elsewhere): two non-zero classes, or one when ``w ∈ {0, 1}``. Its hard label is
   ``a`` when ``w ≥ 0.5`` and ``b`` otherwise (ties go to ``a``).

**Disjoint from the teacher.** With ``mnist_part="generator-half"`` the VAE is trained on, and
the anchors are drawn from, one half of the MNIST training split only
(:func:`mnist_train_halves`: a seeded split stratified by class); the teacher that labels the
generated items is trained on the other half, so no image the teacher saw is decoded into an
item. ``"all"`` uses the whole training split (the generator on its own).

**Official labels with a realistic mode-shift rate** (:func:`official_with_mode_shifts`): a
generated item's official label is its generator mode, except on a seeded fraction ``rate`` of
items (default in the experiment: 0.18, the Fashion-MNIST-H rate) where it is the pair's
*other* class. Flipped items are drawn without replacement with probability proportional to the
generator's minority mass ``min(w, 1 − w)``, so ambiguous blends are flipped far more often
than clear ones (a 50/50 blend five times as often as a 90/10 one; unblended items never) —
as with people, whose majority departs from the official label mostly on ambiguous images.

All random draws of step 2 come from ``numpy.random.default_rng(seed)`` (independent of the
generator's training seed), so the same configuration gives the same bytes on CPU with the
same torch build. The label is a *design* label: the decoded blend need not look like ``w``
of ``a`` to a person or a classifier (the latent path may pass through a third class, and
the decoder's perceived class is not linear in ``w``).
:func:`softlab.metrics.generator_teacher_agreement` measures how far a classifier agrees with it;
the book reports that number next to the data.

Caching (``softlab.paths.cache_dir()``, every file written atomically):

* ``generators/<generator_key>/vae.npz`` (weights) and ``meta.json`` (configuration,
  per-epoch loss, training seconds) — keyed by the generator fields of the configuration;
* ``synthetic-mnist/<dataset_key>.npz`` — the generated set, keyed by the full configuration.

>>> cfg = SyntheticMnistConfig.tiny()                     # doctest: +SKIP
>>> ds = generate_synthetic_mnist(cfg)                    # doctest: +SKIP
>>> ds.images.shape, ds.soft_labels.shape                 # doctest: +SKIP
((200, 28, 28), (200, 10))
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from softlab.data.images import ImageSet, load_images
from softlab.io import atomic_save_npz, atomic_write_text, config_key, load_cached_npz
from softlab.paths import cache_dir
from softlab.runtime import torch_threads
from softlab.validation import check_images, check_labels, check_shape, field_error

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DATASET_NAME",
    "GENERATOR_VERSION",
    "MNIST_PARTS",
    "WEIGHT_DISTS",
    "Generator",
    "SyntheticMnist",
    "SyntheticMnistConfig",
    "dataset_path",
    "describe",
    "generate_synthetic_mnist",
    "generator_dir",
    "generator_modes",
    "generator_soft_labels",
    "load_synthetic_mnist",
    "mnist_train_halves",
    "official_with_mode_shifts",
    "split_synthetic",
    "train_generator",
]

DATASET_NAME = "synthetic-mnist"
#: Bumped whenever the generator or the generation procedure changes (it enters every cache key).
GENERATOR_VERSION = 2
WEIGHT_DISTS = ("uniform", "beta", "fixed")
#: Which part of the MNIST training split the generator trains on and draws anchors from.
MNIST_PARTS = ("all", "generator-half")
#: Seed of the generator/teacher split of the MNIST training split.
HALVES_SEED = 0
N_CLASSES = 10
MNIST_CLASSES = tuple(str(d) for d in range(N_CLASSES))
ALL_PAIRS: tuple[tuple[int, int], ...] = tuple((a, b) for a in range(N_CLASSES) for b in range(a + 1, N_CLASSES))


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SyntheticMnistConfig:
    """Everything that decides a synthetic MNIST set (and so its cache key).

    Generator (VAE) fields — they alone key the cached generator:
      ``latent_dim`` (d), ``hidden`` (widths of the encoder's hidden layers; the decoder mirrors
      them), ``epochs``, ``train_items`` (first-stage subsample of the MNIST training split,
      drawn with ``generator_seed``; ``None`` = all 60,000), ``batch_size``, ``lr`` (Adam),
      ``beta`` (KL weight), ``generator_seed``, ``mnist_part`` (``"all"`` or ``"generator-half"``:
      train and draw anchors on the half of :func:`mnist_train_halves` the teacher never sees).

    Generation fields: ``n_items``, ``seed``, ``class_pairs`` (``None`` = all 45 pairs),
    ``orient_randomly``, ``weight_dist`` (``"uniform"``, ``"beta"``, ``"fixed"``),
    ``weight_concentration`` (``"beta"`` only), ``weight_fixed`` (``"fixed"`` only).
    """

    n_items: int = 3000
    seed: int = 0
    class_pairs: tuple[tuple[int, int], ...] | None = None
    orient_randomly: bool = True
    weight_dist: str = "uniform"
    weight_concentration: float = 4.0
    weight_fixed: float = 0.5
    latent_dim: int = 16
    hidden: tuple[int, ...] = (512, 256)
    epochs: int = 10
    train_items: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    generator_seed: int = 0
    mnist_part: str = "all"

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return field_error(self, name, expected)

        if not isinstance(self.n_items, (int, np.integer)) or self.n_items < 1:
            raise bad("n_items", "a positive integer")
        if self.weight_dist not in WEIGHT_DISTS:
            raise bad("weight_dist", f"one of {WEIGHT_DISTS}")
        if self.mnist_part not in MNIST_PARTS:
            raise bad("mnist_part", f"one of {MNIST_PARTS}")
        if not self.weight_concentration > 0:
            raise bad("weight_concentration", "a positive number")
        if not 0.0 <= self.weight_fixed <= 1.0:
            raise bad("weight_fixed", "a number in [0, 1]")
        if self.latent_dim < 1:
            raise bad("latent_dim", "a positive integer")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise bad("hidden", "a non-empty sequence of positive layer widths")
        if self.epochs < 1:
            raise bad("epochs", "a positive integer")
        if self.train_items is not None and not 1 <= self.train_items <= 60000:
            raise bad("train_items", "None or an integer in [1, 60000]")
        if self.batch_size < 1:
            raise bad("batch_size", "a positive integer")
        if not self.lr > 0:
            raise bad("lr", "a positive learning rate")
        if not self.beta >= 0:
            raise bad("beta", "a non-negative KL weight")
        if self.class_pairs is not None:
            pairs = tuple((int(a), int(b)) for a, b in self.class_pairs)
            if not pairs:
                raise bad("class_pairs", "None or a non-empty list of (a, b) class pairs")
            for a, b in pairs:
                if not (0 <= a < N_CLASSES and 0 <= b < N_CLASSES) or a == b:
                    raise ValueError(
                        f"SyntheticMnistConfig.class_pairs: pair ({a}, {b}): expected two different "
                        f"classes in 0..{N_CLASSES - 1}"
                    )
            object.__setattr__(self, "class_pairs", pairs)

    @classmethod
    def tiny(cls, **overrides: Any) -> SyntheticMnistConfig:
        """A seconds-scale configuration for tests: a small VAE (784 → 128 → 8) on 2,000 images,
        3 epochs of batch 32 (~190 steps), 200 items."""
        base: dict[str, Any] = dict(n_items=200, latent_dim=8, hidden=(128,), epochs=3, batch_size=32, train_items=2000)
        base.update(overrides)
        return cls(**base)

    def pairs(self) -> tuple[tuple[int, int], ...]:
        """The class pairs items are drawn from (``ALL_PAIRS`` when ``class_pairs`` is None)."""
        return self.class_pairs if self.class_pairs is not None else ALL_PAIRS

    def generator_fields(self) -> dict[str, Any]:
        """The fields that decide the trained generator (its cache key)."""
        return {
            "version": GENERATOR_VERSION,
            "latent_dim": self.latent_dim,
            "hidden": list(self.hidden),
            "epochs": self.epochs,
            "train_items": self.train_items,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "beta": self.beta,
            "generator_seed": self.generator_seed,
            "mnist_part": self.mnist_part,
        }

    def generation_fields(self) -> dict[str, Any]:
        """The fields that decide the generated items given the generator (irrelevant ones dropped)."""
        out: dict[str, Any] = {
            "n_items": self.n_items,
            "seed": self.seed,
            "pairs": [list(p) for p in self.pairs()],
            "orient_randomly": self.orient_randomly,
            "weight_dist": self.weight_dist,
        }
        if self.weight_dist == "beta":
            out["weight_concentration"] = self.weight_concentration
        elif self.weight_dist == "fixed":
            out["weight_fixed"] = self.weight_fixed
        return out

    def generator_key(self) -> str:
        return config_key(self.generator_fields())

    def dataset_key(self) -> str:
        return config_key({"generator": self.generator_fields(), "generation": self.generation_fields()})


def generator_dir(cfg: SyntheticMnistConfig) -> Path:
    """``cache_dir()/generators/<generator_key>``."""
    return cache_dir() / "generators" / cfg.generator_key()


def dataset_path(cfg: SyntheticMnistConfig) -> Path:
    """``cache_dir()/synthetic-mnist/<dataset_key>.npz``."""
    return cache_dir() / DATASET_NAME / f"{cfg.dataset_key()}.npz"


# --------------------------------------------------------------------------- MNIST halves


def mnist_train_halves(labels: np.ndarray, seed: int = HALVES_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Split the MNIST training split into a *generator* half and a *teacher* half (sorted int64
    positions). Stratified by class: within each class a seeded permutation is dealt alternately
    to the two halves (continuing across classes), so the halves differ in size by at most one
    overall and within every class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    side = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        side[idx] = (np.arange(len(idx)) + offset) % 2
        offset += len(idx)
    return np.flatnonzero(side == 0).astype(np.int64), np.flatnonzero(side == 1).astype(np.int64)


def _mnist_pool(cfg: SyntheticMnistConfig, labels: np.ndarray) -> np.ndarray:
    """Positions of the MNIST training split the generator may use."""
    if cfg.mnist_part == "generator-half":
        return mnist_train_halves(labels)[0]
    return np.arange(len(labels), dtype=np.int64)


def official_with_mode_shifts(
    pairs: npt.ArrayLike, weights: npt.ArrayLike, rate: float, seed: int = 0
) -> npt.NDArray[np.int64]:
    """Official labels of generated items: the generator mode, except on ``round(rate · n)``
    items where it is the pair's other class.

    The flipped items are drawn without replacement (``numpy.random.default_rng(seed).choice``)
    with probability proportional to ``min(w, 1 − w)``, the generator's minority mass; items with
    ``w ∈ {0, 1}`` are never flipped. ``rate`` must be in ``[0, 0.5]`` and no larger than the
    share of items that can be flipped."""
    pairs, weights = _pairs_and_weights(pairs, weights)
    if not 0.0 <= rate <= 0.5:
        raise ValueError(f"rate: expected a mode-shift rate in [0, 0.5], got {rate!r}")
    modes = generator_modes(pairs, weights)
    other = np.where(modes == pairs[:, 0], pairs[:, 1], pairs[:, 0])
    n_flip = round(rate * len(weights))
    minority = np.minimum(weights, 1.0 - weights)
    eligible = int((minority > 0).sum())
    if n_flip > eligible:
        raise ValueError(f"rate: {rate} asks for {n_flip} mode shifts but only {eligible} items are blends")
    official = modes.copy()
    if n_flip:
        flip = np.random.default_rng(seed).choice(len(weights), size=n_flip, replace=False, p=minority / minority.sum())
        official[flip] = other[flip]
    return official.astype(np.int64)


# --------------------------------------------------------------------------- soft labels


def _pairs_and_weights(
    pairs: npt.ArrayLike, weights: npt.ArrayLike, n_classes: int = N_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Validated class pairs (n, 2) int64 with ``a_i ≠ b_i`` and weights (n,) float64 in [0, 1]."""
    p = check_shape(check_labels(pairs, "pairs", n_classes, ndim=2), (None, 2), "pairs")
    w = check_shape(np.asarray(weights, dtype=np.float64), (len(p),), "weights")
    same = p[:, 0] == p[:, 1]
    if same.any():
        row = int(np.flatnonzero(same)[0])
        raise ValueError(f"pairs: row {row}: expected two different classes, got {p[row].tolist()}")
    outside = ~((w >= 0) & (w <= 1))
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise ValueError(f"weights: entry {k} is {w[k]!r}; expected weights in [0, 1]")
    return p, w


def generator_soft_labels(
    pairs: npt.ArrayLike, weights: npt.ArrayLike, n_classes: int = N_CLASSES
) -> npt.NDArray[np.float32]:
    """The generator's soft label: ``s[i, a_i] = w_i``, ``s[i, b_i] = 1 − w_i``, 0 elsewhere.

    ``pairs`` is (n, 2) int with ``a_i ≠ b_i``; ``weights`` is (n,) in [0, 1]. Returns float32 (n, C).
    """
    p, w = _pairs_and_weights(pairs, weights, n_classes)
    soft = np.zeros((len(w), n_classes), dtype=np.float64)
    rows = np.arange(len(w))
    soft[rows, p[:, 0]] = w
    soft[rows, p[:, 1]] = 1.0 - w
    return soft.astype(np.float32)


def generator_modes(pairs: npt.ArrayLike, weights: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The generator's hard label: ``a_i`` where ``w_i ≥ 0.5``, else ``b_i`` (int64)."""
    p, w = _pairs_and_weights(pairs, weights)
    return np.where(w >= 0.5, p[:, 0], p[:, 1]).astype(np.int64)


# --------------------------------------------------------------------------- the VAE


def _make_vae(latent_dim: int, hidden: Sequence[int]) -> torch.nn.Module:
    import torch
    from torch import nn

    class VAE(nn.Module):
        """Fully connected VAE on flattened 28×28 images in [0, 1]."""

        def __init__(self) -> None:
            super().__init__()
            enc: list[nn.Module] = []
            width = 784
            for h in hidden:
                enc += [nn.Linear(width, h), nn.ReLU()]
                width = h
            self.encoder = nn.Sequential(*enc)
            self.mu = nn.Linear(width, latent_dim)
            self.logvar = nn.Linear(width, latent_dim)
            dec: list[nn.Module] = []
            width = latent_dim
            for h in reversed(tuple(hidden)):
                dec += [nn.Linear(width, h), nn.ReLU()]
                width = h
            dec.append(nn.Linear(width, 784))
            self.decoder = nn.Sequential(*dec)

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.encoder(x)
            return self.mu(h), self.logvar(h)

        def forward(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            mu, logvar = self.encode(x)
            z = mu + noise * torch.exp(0.5 * logvar)
            return self.decoder(z), mu, logvar

    return VAE()


def _train_vae(cfg: SyntheticMnistConfig, progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train the VAE of ``cfg`` on the MNIST training split; returns (state dict as arrays, meta)."""
    import torch
    import torch.nn.functional as F

    train = load_images("mnist", "train")
    rng = np.random.default_rng(cfg.generator_seed)
    pool = _mnist_pool(cfg, train.labels)
    if cfg.train_items is None:
        idx = pool
    else:
        if cfg.train_items > len(pool):
            raise ValueError(
                f"SyntheticMnistConfig.train_items: {cfg.train_items} exceeds the {len(pool)} images of "
                f"mnist_part={cfg.mnist_part!r}"
            )
        idx = np.sort(rng.choice(pool, size=cfg.train_items, replace=False)).astype(np.int64)
    x = torch.from_numpy(train.images[idx].reshape(len(idx), 784).astype(np.float32) / 255.0)
    history: list[float] = []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.generator_seed)
        gen = torch.Generator().manual_seed(cfg.generator_seed)
        model = _make_vae(cfg.latent_dim, cfg.hidden)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        model.train()
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(x), generator=gen)
            total = 0.0
            for start in range(0, len(x), cfg.batch_size):
                xb = x[perm[start : start + cfg.batch_size]]
                noise = torch.randn(len(xb), cfg.latent_dim, generator=gen)
                logits, mu, logvar = model(xb, noise)
                rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(xb)
                kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(xb)
                loss = rec + cfg.beta * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(xb)
            history.append(total / len(x))
            if progress:
                print(
                    f"[synthetic-mnist] generator epoch {epoch + 1}/{cfg.epochs}: loss {history[-1]:.2f} "
                    f"(nats/image), {time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
    state = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    meta = {
        "config": cfg.generator_fields(),
        "loss_per_epoch": history,
        "train_seconds": time.perf_counter() - t0,
        "train_split": "mnist/train",
        "n_train": len(idx),
        "torch": torch.__version__,
    }
    return state, meta


@dataclass
class Generator:
    """A trained VAE: ``encode`` images to posterior means, ``decode`` latent codes to images."""

    config: SyntheticMnistConfig
    model: Any  # torch.nn.Module (VAE)
    meta: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def encode(self, images: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Posterior means μ(x) (n, d) float32 of uint8 images (n, 28, 28)."""
        import torch

        images = check_images(images, "images")
        x = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / 255.0)
        with torch_threads(num_threads), torch.no_grad():
            mu, _ = self.model.encode(x)
        return mu.numpy().astype(np.float32)

    def decode(self, z: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Images ``round(255 · sigmoid(decoder(z)))`` (n, 28, 28) uint8 of latent codes (n, d)."""
        import torch

        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z: expected shape (n, {self.config.latent_dim}), got {z.shape}")
        with torch_threads(num_threads), torch.no_grad():
            out = torch.sigmoid(self.model.decoder(torch.from_numpy(z))).numpy()
        return np.rint(out * 255.0).clip(0, 255).astype(np.uint8).reshape(len(z), 28, 28)

    def interpolate(self, images_a: np.ndarray, images_b: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Decode ``w · μ(x_a) + (1 − w) · μ(x_b)`` per row; returns uint8 (n, 28, 28)."""
        weights = np.asarray(weights, dtype=np.float32)
        za, zb = self.encode(images_a), self.encode(images_b)
        if za.shape != zb.shape or weights.shape != (len(za),):
            raise ValueError(
                f"images_a, images_b, weights: expected matching lengths, got {len(za)}, {len(zb)}, {weights.shape}"
            )
        return self.decode(weights[:, None] * za + (1.0 - weights[:, None]) * zb)


def _load_generator(cfg: SyntheticMnistConfig) -> Generator | None:
    import torch

    folder = generator_dir(cfg)
    weights, meta_path = folder / "vae.npz", folder / "meta.json"
    if not meta_path.exists():
        return None
    arrays = load_cached_npz(weights)  # a damaged file is quarantined and the VAE retrained
    if arrays is None:
        return None
    model = _make_vae(cfg.latent_dim, cfg.hidden)
    state = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model.load_state_dict(state)
    model.eval()
    return Generator(cfg, model, json.loads(meta_path.read_text()), from_cache=True)


def train_generator(cfg: SyntheticMnistConfig, progress: bool = True, num_threads: int | None = None) -> Generator:
    """The VAE of ``cfg``: loaded from ``generator_dir(cfg)`` if cached, else trained and cached."""
    import torch

    cached = _load_generator(cfg)
    if cached is not None:
        return cached
    with torch_threads(num_threads):
        state, meta = _train_vae(cfg, progress=progress)
    folder = generator_dir(cfg)
    atomic_save_npz(folder / "vae.npz", **state)
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2))  # written last: marks the entry complete
    model = _make_vae(cfg.latent_dim, cfg.hidden)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.eval()
    return Generator(cfg, model, meta, from_cache=False)


# --------------------------------------------------------------------------- the data set


@dataclass(frozen=True)
class SyntheticMnist:
    """A generated set. Arrays are aligned by item.

    ``images`` uint8 (n, 28, 28); ``soft_labels`` float32 (n, 10), the generator label;
    ``labels`` int64 (n,), its argmax (ties to ``pairs[:, 0]``); ``pairs`` int64 (n, 2) = (a, b);
    ``weights`` float32 (n,), the weight ``w`` on class ``a``; ``anchors`` int64 (n, 2), indices
    into the MNIST training split of the two decoded anchors; ``index`` int64 (n,), position in
    the full generated set; ``split`` ``"all"``, ``"train"`` or ``"test"``.
    """

    config: SyntheticMnistConfig
    images: np.ndarray
    soft_labels: np.ndarray
    labels: np.ndarray
    pairs: np.ndarray
    weights: np.ndarray
    anchors: np.ndarray
    index: np.ndarray
    split: str = "all"
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> tuple[str, ...]:
        return MNIST_CLASSES

    def subset(self, idx: np.ndarray, split: str | None = None) -> SyntheticMnist:
        """Items ``idx`` (positions in this set) as a new set."""
        idx = np.asarray(idx, dtype=np.int64)
        return replace(
            self,
            images=self.images[idx],
            soft_labels=self.soft_labels[idx],
            labels=self.labels[idx],
            pairs=self.pairs[idx],
            weights=self.weights[idx],
            anchors=self.anchors[idx],
            index=self.index[idx],
            split=split if split is not None else self.split,
        )

    def to_imageset(self) -> ImageSet:
        """The images and hard generator labels as an :class:`ImageSet` (dataset ``"synthetic-mnist"``)."""
        return ImageSet(DATASET_NAME, self.split, self.images, self.labels, MNIST_CLASSES)


_ARRAYS = ("images", "soft_labels", "labels", "pairs", "weights", "anchors", "index")


def _draw_items(cfg: SyntheticMnistConfig, train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded draws: pairs (n, 2), anchors (n, 2) into the training split (within
    ``cfg.mnist_part``), weights (n,) float32."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_items
    table = np.asarray(cfg.pairs(), dtype=np.int64)
    pairs = table[rng.integers(0, len(table), size=n)]
    if cfg.orient_randomly:
        flip = rng.random(n) < 0.5
        pairs = np.where(flip[:, None], pairs[:, ::-1], pairs)
    allowed = _mnist_pool(cfg, train_labels)
    by_class = [allowed[train_labels[allowed] == c] for c in range(N_CLASSES)]
    anchors = np.empty((n, 2), dtype=np.int64)
    for col in range(2):
        u = rng.random(n)
        for c in range(N_CLASSES):
            rows = pairs[:, col] == c
            pool = by_class[c]
            anchors[rows, col] = pool[np.minimum((u[rows] * len(pool)).astype(np.int64), len(pool) - 1)]
    if cfg.weight_dist == "uniform":
        weights = rng.random(n)
    elif cfg.weight_dist == "beta":
        weights = rng.beta(cfg.weight_concentration, cfg.weight_concentration, size=n)
    else:
        weights = np.full(n, cfg.weight_fixed)
    return pairs.astype(np.int64), anchors, weights.astype(np.float32)


def generate_synthetic_mnist(
    cfg: SyntheticMnistConfig | None = None, progress: bool = True, num_threads: int | None = None
) -> SyntheticMnist:
    """The synthetic set of ``cfg`` (default config if None): read from ``dataset_path(cfg)`` if
    cached, else generated with the (cached or freshly trained) generator and cached."""
    cfg = cfg if cfg is not None else SyntheticMnistConfig()
    path = dataset_path(cfg)
    arrays = load_cached_npz(path, required=_ARRAYS)  # a damaged file is quarantined and regenerated
    if arrays is not None:
        return SyntheticMnist(cfg, **{k: arrays[k] for k in _ARRAYS}, split="all", from_cache=True)
    gen = train_generator(cfg, progress=progress, num_threads=num_threads)
    train = load_images("mnist", "train")
    t0 = time.perf_counter()
    pairs, anchors, weights = _draw_items(cfg, train.labels)
    images = np.empty((cfg.n_items, 28, 28), dtype=np.uint8)
    chunk = 4096
    for start in range(0, cfg.n_items, chunk):
        sl = slice(start, start + chunk)
        za = gen.encode(train.images[anchors[sl, 0]], num_threads)
        zb = gen.encode(train.images[anchors[sl, 1]], num_threads)
        w = weights[sl, None]
        images[sl] = gen.decode(w * za + (1.0 - w) * zb, num_threads)
    soft = generator_soft_labels(pairs, weights)
    labels = generator_modes(pairs, weights)
    index = np.arange(cfg.n_items, dtype=np.int64)
    arrays = dict(
        images=images, soft_labels=soft, labels=labels, pairs=pairs, weights=weights, anchors=anchors, index=index
    )
    atomic_save_npz(path, **arrays)
    if progress:
        print(
            f"[synthetic-mnist] generated {cfg.n_items} items in {time.perf_counter() - t0:.2f} s -> {path}", flush=True
        )
    return SyntheticMnist(cfg, **arrays, split="all", from_cache=False)


def split_synthetic(
    ds: SyntheticMnist, test_fraction: float = 0.2, seed: int = 0
) -> tuple[SyntheticMnist, SyntheticMnist]:
    """Seeded train/test split, stratified by the unordered class pair.

    Items are shuffled (``seed``), stably sorted by their unordered pair, and every item at
    position ``j`` of that order with ``⌊(j+1)·f + u⌋ > ⌊j·f + u⌋`` goes to ``test``
    (systematic sampling, ``f = test_fraction``, ``u`` a seeded offset in [0, 1)): the test set
    holds ``f·n`` items up to rounding (±1), and every pair ``f·n_pair`` up to ±1. Items keep
    their original order within each part.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    key = np.sort(ds.pairs, axis=1) @ np.array([N_CLASSES, 1])
    perm = rng.permutation(len(ds))
    order = perm[np.argsort(key[perm], kind="stable")]
    u = rng.random()
    j = np.arange(len(ds))
    take = np.floor((j + 1) * test_fraction + u) > np.floor(j * test_fraction + u)
    is_test = np.zeros(len(ds), dtype=bool)
    is_test[order[take]] = True
    return ds.subset(np.flatnonzero(~is_test), "train"), ds.subset(np.flatnonzero(is_test), "test")


def load_synthetic_mnist(
    split: str = "all",
    cfg: SyntheticMnistConfig | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    progress: bool = True,
) -> ImageSet:
    """The synthetic set as an :class:`ImageSet` (``split`` ``"all"``, ``"train"`` or ``"test"``; the
    split is :func:`split_synthetic` with ``test_fraction`` and ``split_seed``)."""
    if split not in ("all", "train", "test"):
        raise ValueError(f"split: expected 'all', 'train' or 'test', got {split!r}")
    ds = generate_synthetic_mnist(cfg, progress=progress)
    if split == "all":
        return ds.to_imageset()
    train, test = split_synthetic(ds, test_fraction, split_seed)
    return (train if split == "train" else test).to_imageset()


def describe(cfg: SyntheticMnistConfig) -> dict[str, Any]:
    """The configuration as a plain dict, with its cache keys."""
    return {**asdict(cfg), "generator_key": cfg.generator_key(), "dataset_key": cfg.dataset_key()}
