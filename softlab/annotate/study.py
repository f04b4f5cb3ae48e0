"""An annotation study: which images are shown, to whom, in what order, under which rules.

A study lives in one folder (the *study dir*)::

    study.json           settings, item ids, classes, access token (written atomically, mode 0600)
    images.npz           the shown images only: ``items`` (int64 ids), ``images`` (uint8 n×28×28),
                         ``labels`` (int64 official labels, -1 where unknown) — written atomically
    annotator.key        the study secret that signs annotator links (mode 0600; never sent
                         to a browser)
    annotations.sqlite   the answers (see :mod:`softlab.annotate.db`; mode 0600)

so serving and exporting never need the original dataset again.

Item ids are indices into the dataset split (``item = i`` means ``load_images(dataset, split).images[i]``,
or row ``i`` of a user's ``.npy`` array).

Subset strategies (all seeded; ``size`` items, returned sorted):

- ``random``: uniform without replacement.
- ``stratified``: per official class ``c`` with ``n_c`` images, a quota proportional to ``n_c``
  (largest-remainder rounding of ``size · n_c / N``, capped at ``n_c``), drawn uniformly within the class.
- ``uncertain``: the ``size`` items of highest teacher entropy ``H(p_i) = -Σ_c p_ic ln p_ic`` (nats);
  ties broken by a seeded random order.
- ``ambiguous``: the ``size`` items of highest cartography variability (std over epochs of the
  probability of the reference label); ties broken by a seeded random order.

Annotator identity: an annotator is whoever holds their **personal link**, which carries the
annotator id and its key ``HMAC-SHA256(study secret, "softlab-annotator-v1" ‖ study id ‖ id)``
(first 32 hex digits; :func:`annotator_key`). The study owner prints the links with
``softlab annotate links`` and hands each one to its annotator; the server accepts an answer,
or shows progress, only with the key of that annotator id. Knowing the access token or
another annotator's link does not let anyone answer as, or see the progress of, someone else.

Attention checks: ``k`` items drawn from outside the subset, with a known official label, chosen
to be easy: with teacher probabilities, the lowest-entropy items whose teacher argmax equals the
official label; else with variability, the lowest-variability items; else uniformly at random.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from softlab.data.annotations import entropy
from softlab.data.imageset import ImageSet
from softlab.io import atomic_path, atomic_write_text, config_key, load_npz
from softlab.validation import check_images, check_nonnegative, check_probability_rows, check_shape

STUDY_JSON = "study.json"
IMAGES_NPZ = "images.npz"
DB_FILE = "annotations.sqlite"
SECRET_FILE = "annotator.key"
ANNOTATOR_MAX_LEN = 64
ANNOTATOR_PATTERN = re.compile(r"^[\w.@+\- ]+$")
KEY_HEX_DIGITS = 32  # 128 bits of the HMAC
SCHEMA_VERSION = 1
STRATEGIES = ("stratified", "random", "uncertain", "ambiguous")
USER_DATASET = "user"


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""The server's log levels (uvicorn's ``LOG_LEVELS``; ``softlab annotate --log-level``)."""


class StudyError(ValueError):
    """A study cannot be created or opened (bad parameter, file or mismatching settings)."""


@dataclass(frozen=True)
class StudySettings:
    """Rules of a study.

    - ``confidence_min``/``confidence_max``: the integer confidence scale (e.g. 1–5), or both
      ``None`` for no confidence question;
    - ``second_choice``: whether an optional second-choice class is offered;
    - ``allow_reannotation``: whether one annotator may answer the same item more than once
      (without it the database enforces UNIQUE(annotator, item));
    - ``attention_checks``: the number of attention-check items shown to every annotator.
    """

    confidence_min: int | None = 1
    confidence_max: int | None = 5
    second_choice: bool = True
    allow_reannotation: bool = False
    attention_checks: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.confidence_min, self.confidence_max
        if (lo is None) != (hi is None):
            raise StudyError("confidence scale: give both ends (e.g. 1-5) or neither")
        if lo is not None and hi is not None:
            if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, int) or not isinstance(hi, int):
                raise StudyError(f"confidence scale: expected integers, got {lo!r}-{hi!r}")
            if not 0 <= lo < hi <= 1000:
                raise StudyError(f"confidence scale: expected 0 <= min < max <= 1000, got {lo}-{hi}")
        if self.attention_checks < 0:
            raise StudyError(f"attention_checks: expected a count >= 0, got {self.attention_checks}")

    @property
    def has_confidence(self) -> bool:
        return self.confidence_min is not None


@dataclass(frozen=True)
class Study:
    """A study as stored in ``study.json`` (plus its images, loaded on demand)."""

    study_dir: Path
    dataset: str
    split: str
    classes: tuple[str, ...]
    strategy: str
    size: int
    seed: int
    items: tuple[int, ...]  # the annotated subset (sorted dataset indices)
    attention_items: tuple[int, ...]  # attention-check items (disjoint from items)
    attention_labels: tuple[int, ...]  # their official labels
    token: str
    settings: StudySettings
    study_id: str
    created_at: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def all_items(self) -> tuple[int, ...]:
        """Every item an annotator sees: the subset followed by the attention checks."""
        return self.items + self.attention_items

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def db_path(self) -> Path:
        return self.study_dir / DB_FILE

    def is_attention(self, item: int) -> bool:
        return item in self._attention_set

    def has_item(self, item: int) -> bool:
        return item in self._item_set

    @cached_property
    def _attention_set(self) -> frozenset[int]:
        return frozenset(self.attention_items)

    @cached_property
    def _item_set(self) -> frozenset[int]:
        return frozenset(self.all_items)

    def attention_label(self, item: int) -> int:
        return self.attention_labels[self.attention_items.index(item)]

    def load_images(self) -> dict[int, np.ndarray]:
        """Item id → uint8 image (28, 28) for every shown item (from ``images.npz``)."""
        z = load_npz(self.study_dir / IMAGES_NPZ)
        ids = z["items"].astype(np.int64)
        if set(ids.tolist()) != set(self.all_items):
            raise StudyError(
                f"{self.study_dir / IMAGES_NPZ}: its item ids do not match {STUDY_JSON}; "
                "the study folder is inconsistent"
            )
        return {int(i): z["images"][k] for k, i in enumerate(ids)}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "study_id": self.study_id,
            "created_at": self.created_at,
            "dataset": self.dataset,
            "split": self.split,
            "classes": list(self.classes),
            "strategy": self.strategy,
            "size": self.size,
            "seed": self.seed,
            "items": list(self.items),
            "attention_items": list(self.attention_items),
            "attention_labels": list(self.attention_labels),
            "token": self.token,
            "settings": asdict(self.settings),
            "source": self.source,
        }


# --------------------------------------------------------------------------- selection


def _tie_break_order(n: int, seed: int) -> np.ndarray:
    """A seeded random rank for each of ``n`` items, used to break ties reproducibly."""
    return np.random.default_rng([seed, 7]).permutation(n)


def _top_k(score: np.ndarray, k: int, seed: int, candidates: np.ndarray) -> np.ndarray:
    """The ``k`` candidates with the highest score (ties by a seeded random order)."""
    tie = _tie_break_order(len(score), seed)[candidates]
    order = np.lexsort((tie, -score[candidates]))
    return np.sort(candidates[order[:k]])


def _check_size(size: int, available: int, what: str) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise StudyError(f"size: expected a positive integer, got {size!r}")
    if size > available:
        raise StudyError(f"size: asked for {size} items but only {available} {what} are available")


def validate_probs(probs: ArrayLike, n_items: int, name: str = "probs") -> NDArray[np.float64]:
    """Teacher probabilities (N, C): probability rows (:func:`softlab.validation.check_probability_rows`)."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] != n_items:
        raise StudyError(f"{name}: expected shape ({n_items}, n_classes), got {p.shape}")
    return check_probability_rows(p, name, error=StudyError)


def validate_variability(variability: ArrayLike, n_items: int, name: str = "variability") -> NDArray[np.float64]:
    """Cartography variability (N,): finite and non-negative."""
    v = check_shape(variability, (n_items,), name, error=StudyError)
    return check_nonnegative(v, name, what="variability", error=StudyError)


def select_items(
    strategy: str,
    size: int,
    seed: int,
    n_items: int,
    labels: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    variability: np.ndarray | None = None,
) -> np.ndarray:
    """Choose ``size`` of ``n_items`` dataset indices by ``strategy`` (see module docstring); sorted int64."""
    if strategy not in STRATEGIES:
        raise StudyError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
    _check_size(size, n_items, "images")
    rng = np.random.default_rng([seed, 1])
    if strategy == "random":
        return np.sort(rng.choice(n_items, size=size, replace=False)).astype(np.int64)
    if strategy == "stratified":
        if labels is None:
            raise StudyError(
                "strategy 'stratified' needs the official labels "
                "(pass --labels with --images, or use --strategy random)"
            )
        y = np.asarray(labels, dtype=np.int64)
        known = np.flatnonzero(y >= 0)
        _check_size(size, len(known), "labelled images")
        classes, counts = np.unique(y[known], return_counts=True)
        exact = size * counts / counts.sum()
        quota = np.minimum(np.floor(exact).astype(np.int64), counts)
        remainder = exact - np.floor(exact)
        tie = rng.permutation(len(classes))
        for k in np.lexsort((tie, -remainder)):  # largest remainder first, seeded ties
            if quota.sum() >= size:
                break
            if quota[k] < counts[k]:
                quota[k] += 1
        while quota.sum() < size:  # only when caps bind: fill from classes with room
            k = int(np.flatnonzero(quota < counts)[0])
            quota[k] += 1
        chosen = [
            rng.choice(np.flatnonzero(y == c), size=int(q), replace=False) for c, q in zip(classes, quota) if q > 0
        ]
        return np.sort(np.concatenate(chosen)).astype(np.int64)
    if strategy == "uncertain":
        if probs is None:
            raise StudyError(
                "strategy 'uncertain' needs teacher probabilities: pass --probs probs.npy with shape (N, n_classes)"
            )
        p = validate_probs(probs, n_items)
        return _top_k(entropy(p), size, seed, np.arange(n_items)).astype(np.int64)
    if variability is None:
        raise StudyError(
            "strategy 'ambiguous' needs cartography variability: pass --variability variability.npy with shape (N,)"
        )
    v = validate_variability(variability, n_items)
    return _top_k(v, size, seed, np.arange(n_items)).astype(np.int64)


def select_attention_items(
    k: int,
    seed: int,
    exclude: np.ndarray,
    labels: np.ndarray | None,
    probs: np.ndarray | None = None,
    variability: np.ndarray | None = None,
) -> np.ndarray:
    """``k`` easy items outside ``exclude`` with known official labels (see module docstring)."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if labels is None:
        raise StudyError(
            "attention checks need official labels (pass --labels with --images, or use --attention-checks 0)"
        )
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    candidates = np.setdiff1d(np.flatnonzero(y >= 0), np.asarray(exclude, dtype=np.int64))
    if probs is not None:
        p = validate_probs(probs, n)
        agree = candidates[p[candidates].argmax(axis=1) == y[candidates]]
        if len(agree) >= k:
            candidates = agree
        score = -entropy(p)
    elif variability is not None:
        score = -validate_variability(variability, n)
    else:
        score = np.zeros(n)
    if len(candidates) < k:
        raise StudyError(
            f"attention_checks: asked for {k} but only {len(candidates)} labelled images lie outside the subset"
        )
    if probs is None and variability is None:
        return np.sort(np.random.default_rng([seed, 2]).choice(candidates, size=k, replace=False)).astype(np.int64)
    return _top_k(score, k, seed + 1, candidates).astype(np.int64)


def annotator_seed(study_seed: int, annotator: str) -> list[int]:
    """The seed of an annotator's item order: the study seed and a stable 64-bit hash of the id."""
    digest = hashlib.sha256(annotator.encode("utf-8")).digest()
    return [int(study_seed), int.from_bytes(digest[:8], "little")]


def annotator_order(study: Study, annotator: str) -> list[int]:
    """The order in which ``annotator`` sees every item (subset and attention checks):
    a permutation seeded by (study seed, annotator id), identical across restarts."""
    rng = np.random.default_rng(annotator_seed(study.seed, annotator))
    items = np.asarray(study.all_items, dtype=np.int64)
    return [int(i) for i in items[rng.permutation(len(items))]]


# --------------------------------------------------------------------------- images / files


def load_npy(path: str | os.PathLike[str], name: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"{name}: file not found: {p}")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as exc:
        raise StudyError(f"{name}: {p} is not a readable .npy array ({exc})") from exc


def validate_images(images: ArrayLike, name: str = "images") -> NDArray[np.uint8]:
    """A user image array: uint8, shape (N, 28, 28), N >= 1."""
    return check_images(images, name, error=StudyError)


def parse_classes(text: str | None, n: int | None = None) -> tuple[str, ...] | None:
    """Comma-separated class names (``"cat,dog"``) → tuple; ``None`` passes through."""
    if text is None:
        return None
    names = tuple(s.strip() for s in text.split(","))
    if len(names) < 2 or any(not s for s in names) or len(set(names)) != len(names):
        raise StudyError(f"classes: expected at least two distinct non-empty comma-separated names, got {text!r}")
    if n is not None and len(names) != n:
        raise StudyError(f"classes: expected {n} names, got {len(names)}")
    return names


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- annotator identity


def check_annotator_id(raw: str | None) -> str:
    """The trimmed annotator id: 1–64 letters, digits, spaces or ``_ . @ + -`` (StudyError otherwise)."""
    if raw is None:
        raise StudyError("annotator: missing; enter an annotator id")
    if not isinstance(raw, str):
        raise StudyError(f"annotator: expected text, got {type(raw).__name__}")
    a = raw.strip()
    if not a:
        raise StudyError("annotator: empty; enter an annotator id")
    if len(a) > ANNOTATOR_MAX_LEN:
        raise StudyError(f"annotator: longer than {ANNOTATOR_MAX_LEN} characters")
    if not ANNOTATOR_PATTERN.match(a):
        raise StudyError("annotator: use letters, digits, spaces and _ . @ + - only")
    return a


def study_secret(study_dir: str | os.PathLike[str]) -> bytes:
    """The study's signing secret (``annotator.key``, 32 random bytes as hex, mode 0600).

    Created by :func:`create_study`; a study made before annotator links existed gets one on
    first use (created atomically: concurrent first uses agree on one secret).
    """
    path = Path(study_dir) / SECRET_FILE
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=f".{SECRET_FILE}.", suffix=".tmp", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if another process created it first: theirs wins
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    text = path.read_text(encoding="ascii").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise StudyError(f"{path}: not a study secret (expected 64 hex digits)")
    return bytes.fromhex(text)


def annotator_key(study: Study, annotator: str, secret: bytes | None = None) -> str:
    """The key in ``annotator``'s personal link: the first 32 hex digits of
    ``HMAC-SHA256(secret, b"softlab-annotator-v1\\0" + study_id + b"\\0" + annotator)`` (UTF-8)."""
    a = check_annotator_id(annotator)
    secret = study_secret(study.study_dir) if secret is None else secret
    msg = b"softlab-annotator-v1\0" + study.study_id.encode("ascii") + b"\0" + a.encode("utf-8")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()[:KEY_HEX_DIGITS]


def key_matches(study: Study, annotator: str, key: str | None, secret: bytes | None = None) -> bool:
    """Whether ``key`` is ``annotator``'s key (constant-time comparison)."""
    if not key:
        return False
    return hmac.compare_digest(key.encode("utf-8"), annotator_key(study, annotator, secret).encode("ascii"))


def annotator_link(study: Study, annotator: str, base_url: str = "http://127.0.0.1:8765/") -> str:
    """``annotator``'s personal link: ``base_url?annotator=ID&key=KEY&token=TOKEN``."""
    from urllib.parse import urlencode

    a = check_annotator_id(annotator)
    base = base_url if base_url.endswith("/") else base_url + "/"
    return base + "?" + urlencode({"annotator": a, "key": annotator_key(study, a), "token": study.token})


# --------------------------------------------------------------------------- create / open


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def create_study(
    study_dir: str | os.PathLike[str],
    *,
    images: np.ndarray,
    labels: np.ndarray | None,
    classes: Sequence[str],
    dataset: str,
    split: str,
    strategy: str = "stratified",
    size: int = 50,
    seed: int = 0,
    probs: np.ndarray | None = None,
    variability: np.ndarray | None = None,
    settings: StudySettings | None = None,
    source: dict[str, Any] | None = None,
) -> Study:
    """Choose the subset and attention checks, write ``images.npz`` then ``study.json`` (both atomically).

    ``images`` is the full split (N, 28, 28) uint8; ``labels`` its official labels (N,) int
    (``-1`` = unknown) or ``None``. Refuses a folder that already holds a study.
    """
    study_dir = Path(study_dir)
    settings = settings or StudySettings()
    imgs = validate_images(images)
    n = imgs.shape[0]
    cls = tuple(str(c) for c in classes)
    if len(cls) < 2 or len(set(cls)) != len(cls):
        raise StudyError(f"classes: expected at least two distinct class names, got {cls}")
    y: np.ndarray | None = None
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise StudyError(f"labels: expected integer labels of shape ({n},), got {y.dtype} {y.shape}")
        y = y.astype(np.int64)
        bad = (y < -1) | (y >= len(cls))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise StudyError(f"labels: row {r}: {y[r]} is outside the classes 0..{len(cls) - 1} (or -1 for unknown)")
    if probs is not None and np.asarray(probs).ndim == 2 and np.asarray(probs).shape[1] != len(cls):
        raise StudyError(f"probs: expected {len(cls)} columns (one per class), got {np.asarray(probs).shape[1]}")
    if (study_dir / STUDY_JSON).exists():
        raise StudyError(
            f"study_dir: {study_dir} already holds a study ({STUDY_JSON}); open it instead or choose a new folder"
        )
    items = select_items(strategy, size, seed, n, labels=y, probs=probs, variability=variability)
    attention = select_attention_items(settings.attention_checks, seed, items, y, probs=probs, variability=variability)
    att_labels = tuple(int(y[i]) for i in attention) if y is not None else ()
    shown = np.concatenate([items, attention]).astype(np.int64)
    shown_labels = y[shown] if y is not None else np.full(len(shown), -1, dtype=np.int64)
    config = {
        "dataset": dataset,
        "split": split,
        "classes": list(cls),
        "strategy": strategy,
        "size": int(size),
        "seed": int(seed),
        "items": items.tolist(),
        "attention_items": attention.tolist(),
        "settings": asdict(settings),
        "source": source or {},
    }
    token = secrets.token_urlsafe(24)
    study = Study(
        study_dir=study_dir,
        dataset=dataset,
        split=split,
        classes=cls,
        strategy=strategy,
        size=int(size),
        seed=int(seed),
        items=tuple(int(i) for i in items),
        attention_items=tuple(int(i) for i in attention),
        attention_labels=att_labels,
        token=token,
        settings=settings,
        study_id=config_key({**config, "token": token}),  # unique per study, even for equal settings
        created_at=_now(),
        source=dict(source or {}),
    )
    study_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(study_dir / IMAGES_NPZ) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, items=shown, images=imgs[shown], labels=shown_labels.astype(np.int64))
    study_secret(study_dir)
    atomic_write_text(study_dir / STUDY_JSON, json.dumps(study.to_json(), indent=2) + "\n")
    return study


def open_study(study_dir: str | os.PathLike[str]) -> Study:
    """Read ``study.json`` from ``study_dir`` and check it."""
    study_dir = Path(study_dir)
    path = study_dir / STUDY_JSON
    if not path.is_file():
        raise StudyError(
            f"study_dir: no {STUDY_JSON} in {study_dir}; create a study first "
            f"(softlab annotate --dataset ... --study-dir {study_dir})"
        )
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("schema_version") != SCHEMA_VERSION:
            raise StudyError(f"{path}: schema_version {d.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        study = Study(
            study_dir=study_dir,
            dataset=str(d["dataset"]),
            split=str(d["split"]),
            classes=tuple(str(c) for c in d["classes"]),
            strategy=str(d["strategy"]),
            size=int(d["size"]),
            seed=int(d["seed"]),
            items=tuple(int(i) for i in d["items"]),
            attention_items=tuple(int(i) for i in d["attention_items"]),
            attention_labels=tuple(int(i) for i in d["attention_labels"]),
            token=str(d["token"]),
            settings=StudySettings(**d["settings"]),
            study_id=str(d["study_id"]),
            created_at=str(d["created_at"]),
            source=dict(d.get("source", {})),
        )
    except StudyError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise StudyError(f"{path}: not a valid study file ({exc!r})") from exc
    if len(set(study.all_items)) != len(study.all_items):
        raise StudyError(f"{path}: item ids repeat, or an attention item is also in the subset")
    if len(study.attention_labels) != len(study.attention_items):
        raise StudyError(f"{path}: attention_labels and attention_items differ in length")
    if len(study.token) < 16:
        raise StudyError(f"{path}: the access token is missing or too short")
    return study


def _load_dataset(dataset: str, split: str) -> ImageSet:
    """A verified data set (:func:`softlab.data.load_images`), or the default synthetic MNIST set
    (:func:`softlab.generator.load_synthetic_mnist`: generated and cached on first use)."""
    if dataset == "synthetic-mnist":
        from softlab.generator import load_synthetic_mnist

        return load_synthetic_mnist(split)
    from softlab.data import load_images

    return load_images(dataset, split)


def load_source(
    dataset: str | None,
    split: str,
    images_path: str | os.PathLike[str] | None = None,
    labels_path: str | os.PathLike[str] | None = None,
    classes: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...], str, dict[str, Any]]:
    """Images, labels, classes, dataset name and provenance for a new study.

    Either a user array (``images_path``: .npy uint8 (N, 28, 28); ``labels_path`` optional .npy
    ints) or a dataset known to :func:`softlab.data.load_images`, or ``synthetic-mnist`` (the
    default generated set of :func:`softlab.generator.load_synthetic_mnist`, splits ``all``,
    ``train``, ``test``).
    """
    if images_path is not None:
        from softlab.io import sha256_file

        imgs = validate_images(load_npy(images_path, "--images"), "--images")
        y = None
        source: dict[str, Any] = {"images": str(Path(images_path).resolve()), "images_sha256": sha256_file(images_path)}
        if labels_path is not None:
            y = load_npy(labels_path, "--labels")
            source.update(labels=str(Path(labels_path).resolve()), labels_sha256=sha256_file(labels_path))
        n_cls = max(10, int(np.max(y)) + 1) if y is not None and y.size and np.issubdtype(y.dtype, np.integer) else 10
        cls = parse_classes(classes) or tuple(str(c) for c in range(n_cls))
        return imgs, y, cls, dataset or USER_DATASET, source
    if dataset is None:
        raise StudyError("dataset: give --dataset (mnist, synthetic-mnist, fashion-mnist) or --images path.npy")
    if labels_path is not None:
        raise StudyError("--labels: only used with --images (a dataset brings its own labels)")
    try:
        image_set = _load_dataset(dataset, split)
    except (ValueError, RuntimeError, OSError) as exc:  # unknown name/split, DataError (missing or corrupt files)
        raise StudyError(f"--dataset {dataset} --split {split}: {exc}") from exc
    cls = parse_classes(classes, len(image_set.classes)) or tuple(image_set.classes)
    return (
        np.asarray(image_set.images),
        np.asarray(image_set.labels),
        cls,
        dataset,
        {"loader": "softlab.data.load_images"},
    )
