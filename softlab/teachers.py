"""Teachers: the models whose probabilities make the ``synthetic`` soft labels.

A teacher is trained on data **disjoint from the human-labelled pool** — the dataset's 60,000
image training split minus the items listed in ``exclude`` (the experiment excludes its
disjoint evaluation sample, or, for synthetic MNIST, the half of MNIST the generator uses),
optionally a seeded subsample of ``n_train`` of the rest — so its probabilities on the pool
(the 10,000 test images) are out-of-sample, and the evaluation sample is out-of-sample for it
too. Several teachers differ by ``seed`` (initial weights, batch order, subsample). A teacher trained on
MNIST also labels generated images (:func:`teacher_probs_on`, used for synthetic MNIST).

Definitions
-----------
* logits ``f(x) ∈ ℝ^10``; probabilities ``p(x) = softmax(f(x))``, computed in float64 and
  returned as float32 rows that sum to 1. Temperature is *not* applied here: the labels layer
  fits it (``softmax(f / T)``), which is why :func:`teacher_logits` is exposed too.
* Training: ``softlab.train.train_members`` with one member whose targets are the one-hot
  official labels (so cross-entropy), Adam (``lr``, ``weight_decay``), mini-batches of
  ``batch_size`` in the trainer's seeded order, ``epochs`` passes; inputs are ``uint8 / 255`` in
  [0, 1]. Initial weights, subsample and batch order all come from ``seed``.
* Models: ``softlab.models`` — ``"mlp"`` = 784 → ``hidden`` (ReLU) → 10 (one hidden layer);
  ``"cnn"`` = the reference CNN (conv 1→16, conv 16→32, ``hidden``, 10). (The CNN is several
  times slower on CPU.)

Sources of synthetic probabilities (:func:`synthetic_probs`):

* ``"teacher"``: a teacher of this module (:class:`TeacherConfig`);
* ``"cleanlab-cv"`` (MNIST test only): the published cross-validated out-of-sample
  probabilities of Northcutt et al. (``softlab.data.load_mnist_cleanlab_probs``), checked to be
  aligned with the MNIST test labels item by item.

Caching: ``cache_dir()/teachers/<config_key>/`` holds ``weights.npz``, ``train_indices.npz``,
``meta.json`` (written last: an entry without it is incomplete and is retrained) and
``logits_<pool>.npz``; every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from softlab import labels
from softlab.data import load_images, load_mnist_cleanlab_probs
from softlab.io import atomic_save_npz, atomic_write_text, config_key, load_npz
from softlab.models import ModelConfig, build_model
from softlab.paths import cache_dir
from softlab.runtime import torch_threads
from softlab.train import TRAINER_VERSION, Member, TrainConfig, train_members
from softlab.validation import field_error

__all__ = [
    "MODEL_KINDS",
    "SYNTHETIC_SOURCES",
    "TEACHER_DATASETS",
    "TEACHER_VERSION",
    "TRAIN_SPLIT",
    "Teacher",
    "TeacherConfig",
    "cleanlab_cv_probs",
    "softmax",
    "synthetic_probs",
    "teacher_dir",
    "teacher_logits",
    "teacher_probs",
    "teacher_probs_on",
    "train_teacher",
    "train_teachers",
]

#: Bumped whenever training or the models change (it enters every cache key).
TEACHER_VERSION = 3
TEACHER_DATASETS = ("mnist", "fashion-mnist", "cifar10")
#: Input shape (channels, height, width) of each teacher data set.
INPUT_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
MODEL_KINDS = ("mlp", "cnn")
SYNTHETIC_SOURCES = ("teacher", "cleanlab-cv")
#: The split every teacher is trained on; the pool (``test``) is disjoint from it.
TRAIN_SPLIT = "train"
N_CLASSES = 10


@dataclass(frozen=True)
class TeacherConfig:
    """A teacher's full configuration (its cache key).

    ``dataset`` (``"mnist"``/``"fashion-mnist"``), ``model`` (``"mlp"``/``"cnn"``), ``hidden``
    (width of the last hidden layer), ``epochs``, ``batch_size``, ``lr`` and ``weight_decay``
    (Adam), ``seed``, ``n_train`` (size of a seeded subsample of the remaining training items;
    ``None`` = all of them), ``exclude`` (sorted positions in the training split the teacher must
    never see; they enter the cache key as their count and SHA-256).
    """

    dataset: str = "mnist"
    model: str = "mlp"
    hidden: int = 256
    epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    n_train: int | None = None
    exclude: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return field_error(self, name, expected)

        if self.dataset not in TEACHER_DATASETS:
            raise bad("dataset", f"one of {TEACHER_DATASETS}")
        if self.model not in MODEL_KINDS:
            raise bad("model", f"one of {MODEL_KINDS}")
        if self.hidden < 1:
            raise bad("hidden", "a positive layer width")
        if self.epochs < 1:
            raise bad("epochs", "a positive integer")
        if self.batch_size < 1:
            raise bad("batch_size", "a positive integer")
        if not self.lr > 0:
            raise bad("lr", "a positive learning rate")
        if not self.weight_decay >= 0:
            raise bad("weight_decay", "a non-negative number")
        if self.n_train is not None and not 1 <= self.n_train <= 60000:
            raise bad("n_train", "None or an integer in [1, 60000]")
        excl = tuple(sorted({int(i) for i in self.exclude}))
        if excl and (excl[0] < 0 or excl[-1] >= 60000):
            raise bad("exclude", "positions in [0, 60000) of the training split")
        object.__setattr__(self, "exclude", excl)

    @classmethod
    def tiny(cls, **overrides: Any) -> TeacherConfig:
        """A seconds-scale configuration for tests: MLP(64) on 2,000 training images, 1 epoch of batch 32."""
        base: dict[str, Any] = dict(hidden=64, epochs=1, batch_size=32, n_train=2000)
        base.update(overrides)
        return cls(**base)

    def key_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        excl = np.asarray(self.exclude, dtype=np.int64)
        fields["exclude"] = {"n": int(excl.size), "sha256": hashlib.sha256(excl.tobytes()).hexdigest()}
        return {
            "version": TEACHER_VERSION,
            "trainer": f"softlab.train/{TRAINER_VERSION}",
            "train_split": TRAIN_SPLIT,
            **fields,
        }

    def train_positions(self, n_split: int) -> np.ndarray:
        """Sorted positions of the training split this teacher trains on."""
        keep = np.setdiff1d(np.arange(n_split, dtype=np.int64), np.asarray(self.exclude, dtype=np.int64))
        if self.n_train is None:
            return keep
        if self.n_train > len(keep):
            raise ValueError(
                f"TeacherConfig.n_train: {self.n_train} exceeds the {len(keep)} training items left "
                f"after excluding {len(self.exclude)}"
            )
        return np.sort(np.random.default_rng(self.seed).choice(keep, size=self.n_train, replace=False)).astype(np.int64)

    def key(self) -> str:
        return config_key(self.key_fields())


def _resolve(dataset: str | None, cfg: TeacherConfig | None) -> TeacherConfig:
    """``cfg`` with its ``dataset`` set to ``dataset`` (the argument wins; None keeps ``cfg.dataset``)."""
    cfg = cfg if cfg is not None else TeacherConfig()
    if dataset is not None and dataset != cfg.dataset:
        if dataset not in TEACHER_DATASETS:
            raise ValueError(f"dataset: expected one of {TEACHER_DATASETS}, got {dataset!r}")
        cfg = replace(cfg, dataset=dataset)
    return cfg


def teacher_dir(cfg: TeacherConfig) -> Path:
    """``cache_dir()/teachers/<cfg.key()>``."""
    return cache_dir() / "teachers" / cfg.key()


# --------------------------------------------------------------------------- models and training


def model_config(cfg: TeacherConfig) -> ModelConfig:
    """The ``softlab.models`` architecture of a teacher."""
    shape = INPUT_SHAPES[cfg.dataset]
    if cfg.model == "mlp":
        return ModelConfig(kind="mlp", hidden=cfg.hidden, depth=1, n_classes=N_CLASSES, in_shape=shape)
    return ModelConfig(kind="cnn", hidden=cfg.hidden, n_classes=N_CLASSES, in_shape=shape)


def _make_model(cfg: TeacherConfig) -> nn.Module:
    """The teacher network of ``cfg`` (input (n, C, H, W) in [0, 1], output 10 logits)."""
    return build_model(model_config(cfg))


def _as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, 28, 28) → float32 tensor (n, 1, 28, 28) in [0, 1]; colour (n, 32, 32, 3) →
    (n, 3, 32, 32)."""
    images = np.asarray(images)
    if images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28):
        return torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    if images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (32, 32, 3):
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0)
    raise ValueError(
        f"images: expected uint8 images shaped (n, 28, 28) or (n, 32, 32, 3), got {images.dtype} {images.shape}"
    )


@dataclass
class Teacher:
    """A trained teacher. ``train_indices`` are the items of ``config.dataset``/``train`` it saw."""

    config: TeacherConfig
    model: nn.Module
    train_indices: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def logits(self, images: np.ndarray, batch_size: int = 4096, num_threads: int | None = None) -> np.ndarray:
        """Logits float32 (n, 10) of uint8 images (n, 28, 28)."""
        x = _as_input(images)
        out = np.empty((len(x), N_CLASSES), dtype=np.float32)
        self.model.eval()
        with torch_threads(num_threads), torch.no_grad():
            for start in range(0, len(x), batch_size):
                out[start : start + batch_size] = self.model(x[start : start + batch_size]).numpy()
        return out

    def predict_proba(self, images: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """``softmax(logits)`` float32 (n, 10)."""
        return softmax(self.logits(images, num_threads=num_threads))


def softmax(logits: ArrayLike, temperature: float = 1.0) -> NDArray[np.float32]:
    """``softmax(logits / T)`` over the last axis (:func:`softlab.labels.softmax`, float64),
    returned float32."""
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    return labels.softmax(logits, temperature).astype(np.float32)


def _load_teacher(cfg: TeacherConfig) -> Teacher | None:
    folder = teacher_dir(cfg)
    paths = [folder / "weights.npz", folder / "train_indices.npz", folder / "meta.json"]
    if not all(p.exists() for p in paths):
        return None
    model = _make_model(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in load_npz(paths[0]).items()})
    model.eval()
    idx = load_npz(paths[1])["train_indices"]
    return Teacher(cfg, model, idx, json.loads(paths[2].read_text()), from_cache=True)


def train_teacher(
    dataset: str | None = "mnist",
    cfg: TeacherConfig | None = None,
    progress: bool = False,
    num_threads: int | None = None,
) -> Teacher:
    """The teacher of ``cfg`` on ``dataset`` (which overrides ``cfg.dataset``; None keeps it):
    loaded from :func:`teacher_dir` if cached, else trained on the ``train`` split and cached."""
    (teacher,) = train_teachers([_resolve(dataset, cfg)], progress=progress, num_threads=num_threads)
    return teacher


def _batch_key(cfg: TeacherConfig) -> tuple[Any, ...]:
    """What teachers trained in one batched computation must share (everything but the seed,
    which decides each one's initial weights, batch order and subsample)."""
    return (cfg.dataset, cfg.model, cfg.hidden, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay)


def train_teachers(
    cfgs: Sequence[TeacherConfig], progress: bool = False, num_threads: int | None = None
) -> list[Teacher]:
    """The teachers of ``cfgs`` (in order): cached ones are loaded; the missing ones are trained
    **together**, as members of one ``softlab.train.train_members`` call per shared
    architecture and training setting (:func:`_batch_key`), each on its own training positions
    (:meth:`TeacherConfig.train_positions`) with its own seed, and cached one by one (every file
    atomic, ``meta.json`` last). The trainer batches members without changing any member's
    numbers, so a teacher is the same whether it was trained alone or with others."""
    out: list[Teacher | None] = [_load_teacher(c) for c in cfgs]
    missing: dict[tuple[Any, ...], list[int]] = {}
    for i, (c, t) in enumerate(zip(cfgs, out)):
        if t is None and not any(cfgs[j] == c for j in missing.get(_batch_key(c), [])):
            missing.setdefault(_batch_key(c), []).append(i)
    for idxs in missing.values():
        group = [cfgs[i] for i in idxs]
        train = load_images(group[0].dataset, TRAIN_SPLIT)
        x = _as_input(train.images).numpy()
        targets = np.eye(N_CLASSES, dtype=np.float32)[np.asarray(train.labels, dtype=np.int64)]
        positions = [c.train_positions(len(train)) for c in group]
        members = [
            Member(seed=c.seed, targets=targets, train_idx=pos, name=f"teacher-{c.dataset}-seed{c.seed}")
            for c, pos in zip(group, positions)
        ]
        first = group[0]
        train_cfg = TrainConfig(
            model=model_config(first),
            epochs=first.epochs,
            batch_size=first.batch_size,
            lr=first.lr,
            weight_decay=first.weight_decay,
            record_dynamics=False,
        )
        t0 = time.perf_counter()
        with torch_threads(num_threads):
            results = train_members(x, members, train_cfg, progress=progress, keep_params=True)
        seconds = (time.perf_counter() - t0) / len(group)
        for i, c, pos, result in zip(idxs, group, positions, results):
            if result.diverged:
                raise RuntimeError(f"teacher training diverged: {result.message}")
            assert result.params is not None
            out[i] = _save_teacher(c, result.params, pos, [float(v) for v in result.train_loss], seconds, len(group))
    for i, c in enumerate(cfgs):  # a configuration listed twice: the copy trained above
        if out[i] is None:
            out[i] = _load_teacher(c)
    return [t for t in out if t is not None]


def _save_teacher(
    cfg: TeacherConfig,
    weights: dict[str, np.ndarray],
    idx: np.ndarray,
    train_loss: list[float],
    seconds: float,
    batched_with: int,
) -> Teacher:
    model = _make_model(cfg)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    model.eval()
    meta = {
        "config": cfg.key_fields(),
        "dataset": cfg.dataset,
        "train_split": TRAIN_SPLIT,
        "n_train": len(idx),
        "train_seconds": seconds,
        "trained_with": batched_with,
        "torch": torch.__version__,
        "train_loss_per_epoch": train_loss,
    }
    folder = teacher_dir(cfg)
    atomic_save_npz(
        folder / "weights.npz", **{k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    )
    atomic_save_npz(folder / "train_indices.npz", train_indices=idx)
    atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2))  # written last: marks the entry complete
    return Teacher(cfg, model, idx, meta, from_cache=False)


# --------------------------------------------------------------------------- probabilities


def _check_pool(pool: str) -> None:
    if pool == TRAIN_SPLIT:
        raise ValueError(
            f"pool: the teacher is trained on the {TRAIN_SPLIT!r} split, so its probabilities there are "
            "in-sample; expected 'test' (the human-labelled pool)"
        )
    if pool != "test":
        raise ValueError(f"pool: expected 'test', got {pool!r}")


def teacher_logits(
    dataset: str = "mnist", pool: str = "test", cfg: TeacherConfig | None = None, progress: bool = False
) -> np.ndarray:
    """Out-of-sample logits float32 (n_pool, 10) of the teacher on ``dataset``/``pool``, in item
    order; cached as ``teacher_dir(cfg)/logits_<pool>.npz``."""
    _check_pool(pool)
    cfg = _resolve(dataset, cfg)
    path = teacher_dir(cfg) / f"logits_{pool}.npz"
    if path.exists() and (teacher_dir(cfg) / "meta.json").exists():
        return load_npz(path)["logits"]
    teacher = train_teacher(cfg.dataset, cfg, progress=progress)
    logits = teacher.logits(load_images(cfg.dataset, pool).images)
    atomic_save_npz(path, logits=logits)
    return logits


def teacher_probs(
    dataset: str = "mnist", pool: str = "test", cfg: TeacherConfig | None = None, progress: bool = False
) -> np.ndarray:
    """Out-of-sample probabilities ``softmax(teacher_logits)`` float32 (n_pool, 10)."""
    return softmax(teacher_logits(dataset, pool, cfg, progress=progress))


def teacher_probs_on(images: np.ndarray, cfg: TeacherConfig | None = None, progress: bool = False) -> np.ndarray:
    """Probabilities float32 (n, 10) of the teacher of ``cfg`` (default: MNIST) on uint8 images
    (n, 28, 28), e.g. generated synthetic-MNIST digits. Not cached (inference is cheap)."""
    cfg = cfg if cfg is not None else TeacherConfig()
    return train_teacher(cfg.dataset, cfg, progress=progress).predict_proba(images)


def cleanlab_cv_probs(download: bool = True) -> np.ndarray:
    """Northcutt et al.'s cross-validated probabilities float32 (10000, 10) on the MNIST test
    split, after checking that their original labels equal the MNIST test labels item by item."""
    probs, original = load_mnist_cleanlab_probs(download=download)
    test = load_images("mnist", "test")
    if probs.shape != (len(test), N_CLASSES) or original.shape != test.labels.shape:
        raise ValueError(
            f"cleanlab-cv: expected probabilities ({len(test)}, {N_CLASSES}) and {len(test)} labels, got "
            f"{probs.shape} and {original.shape}"
        )
    mismatch = np.flatnonzero(original != test.labels)
    if mismatch.size:
        raise ValueError(
            f"cleanlab-cv: original labels are not aligned with the MNIST test labels "
            f"({mismatch.size} differ, first at item {int(mismatch[0])})"
        )
    return probs


def synthetic_probs(
    dataset: str = "mnist",
    source: str = "teacher",
    pool: str = "test",
    cfg: TeacherConfig | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Synthetic (model) probabilities float32 (n_pool, 10) on ``dataset``/``pool``, in item order.

    ``source``: ``"teacher"`` (:func:`teacher_probs` with ``cfg``) or ``"cleanlab-cv"`` (MNIST
    test only; :func:`cleanlab_cv_probs`).
    """
    if source not in SYNTHETIC_SOURCES:
        raise ValueError(f"source: expected one of {SYNTHETIC_SOURCES}, got {source!r}")
    _check_pool(pool)
    if source == "teacher":
        return teacher_probs(dataset, pool, cfg, progress=progress)
    if dataset != "mnist":
        raise ValueError(f"dataset: source 'cleanlab-cv' exists for 'mnist' only, got {dataset!r}")
    return cleanlab_cv_probs()
