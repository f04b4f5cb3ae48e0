"""The research protocol (the book's "Protocol" section) for one dataset arm: pool, folds,
calibration split, teachers, fold-clean label conditions, and the paired grid of runs.

An **arm** is a dataset with a human-labelled (or generator-labelled) pool; the built-in arms are
the rows of :data:`softlab.arms.ARM_SPECS` (their facts in one line each), described here:

- ``fashion-mnist``: the 10,000 test images, all labelled by Fashion-MNIST-H (optionally a
  stratified subsample, ``pool_size``); the disjoint split is the 60k training split.
- ``mnist``: the MNIST test images (a stratified subsample of ``pool_size`` plus the 100
  MNIST-MTurk items, which are always in); only those 100 are human-labelled, so only they change
  with the condition, and only their held-out predictions are analysed.
- ``synthetic-mnist``: generated ambiguous digits with known truth. The generator's two-class
  soft label fills the reference slot ``h`` (called "generator", never "human"). The official
  label is the generator mode except on a seeded share ``synthetic_mode_shift`` of items
  (default 0.18, the Fashion-MNIST-H rate) where it is the pair's other class, chosen with
  probability proportional to the generator's minority mass
  (:func:`softlab.generator.official_with_mode_shifts`). The generator trains on, and
  draws its anchors from, one half of the MNIST training split; the arm's teachers train on the
  other half (:func:`softlab.generator.mnist_train_halves`). The disjoint split is
  the MNIST test split.
- ``cifar10``: the 10,000 CIFAR-10 test images, all labelled by CIFAR-10H (Peterson et al. 2019);
  the disjoint split is the 50k training split. Needs the CIFAR-10 images (downloaded where
  there is internet, or placed in ``SOFTLAB_DATA_DIR``); where they are missing the arm is
  skipped with one line saying what to download (:class:`softlab.data.cifar.DataUnavailable`).
- ``votes`` (any name): a long-format votes table (``item, annotator, label[, weight]``, e.g.
  the annotation app's export) as the human reference of a known test split (``images``:
  ``mnist``, ``fashion-mnist`` or ``cifar10``); like the mnist arm, the pool is the split (or a
  ``pool_size`` subsample) with the voted items always in, and only they change with the
  condition.

Protocol of one arm
-------------------
* **A seed is one re-run of the whole pipeline** (``resample``, default ``("init", "split",
  "teacher")``). Seed ``s`` re-draws the fold assignment and calibration split (``"split"``:
  seeded by ``SeedSequence([pool_seed, SPLIT_STREAM, s])``), the teacher (``"teacher"``: trained
  from the seed ``SeedSequence([pool_seed, TEACHER_STREAM, s])`` on the same teacher data) and the
  student's initial weights and batch order (``"init"``, always: the trainer derives them from
  ``s``). All conditions of one seed share all of these (the pairing). ``resample=("init",)`` is
  the earlier design: one split from ``pool_seed`` and ``n_teachers`` teachers shared round-robin
  (seed ``s`` uses teacher ``s mod n_teachers``). The nested designs ``("init",)``, ``("init",
  "split")``, ``("init", "split", "teacher")`` decompose the seed-to-seed variance
  (:func:`variance_decomposition`). With ``"split"`` every fold is trained (``run_folds`` 0): a
  single-fold design would evaluate different items in every seed.
* **Folds.** The pool is split into ``folds`` folds stratified by official label (seeded as
  above); mode-shifted annotated items are dealt first, then the other annotated items,
  then the rest, so each of these groups spreads evenly over folds (±1) — which matters when
  only some items are annotated (:func:`stratified_folds`).
* **Calibration split.** For each fold ``k``, a seeded share ``calibration_fraction`` of the
  training folds (stratified like the folds) is set apart: no model of fold ``k`` trains on it,
  and it is never evaluated. It exists only to fit the post-hoc temperature of the ``+ts``
  baselines (:mod:`softlab.posthoc`), against each item's reference distribution (its human
  distribution where it has one, else its one-hot official label). We chose an inner split of
  the training folds, not a slice of the disjoint split, because only the pool carries reference
  distributions of the same kind as the evaluation (and, for synthetic MNIST, images of the same
  kind: the disjoint split there is real MNIST).
* **Teachers.** Teachers are trained on the disjoint split *minus the disjoint evaluation
  sample* (fashion-mnist, mnist) or on the teacher half of MNIST (synthetic-mnist): one per seed
  (``"teacher"`` resampled) or ``n_teachers`` shared ones. All teachers of a run are trained
  together, batched like students (:func:`softlab.teachers.train_teachers`), and cached.
* **Own-data teachers** (``synthetic-own-data``). For run (seed, fold), the fold's training
  items are split (stratified, seeded by the seed and fold) into ``OWN_DATA_PARTS`` parts; a
  teacher of the arm's teacher architecture trained on the other parts labels each part, so every
  training item's probabilities come from a teacher that saw only the student's own training
  items and never that item. All of an arm's own-data teachers train in one batched call; their
  cross-fitted probabilities are cached (``cache_dir()/own-data-teachers/``).
* **Fold-clean conditions.** The targets of fold ``k`` are built (:func:`softlab.labels.build_conditions`)
  from the items a fold-``k`` model trains on *only*: ε of ``smooth``/``smooth-mass``, the
  teacher temperature ``T`` and the ``human-shuffled`` permutations never see a held-out (or
  calibration) item's label. The permutations are drawn per (seed, fold) from
  ``SeedSequence([label_seed, seed, fold])``, so their randomness enters every interval.
* **Grid.** One run per (seed, fold, condition): it trains on the fold's training items with the
  condition's targets, watches its held-out fold and calibration items (probabilities after every
  epoch and at the end, :class:`softlab.train.Member` ``watch_idx``) and is evaluated on a
  sample of the disjoint split. The same seed gives every condition the same initial weights and
  batch order (paired comparisons).
* **Strata.** Difficulty tertiles of the reference entropy are fitted per fold on the training
  items' entropies and applied to the held-out items (:meth:`Arm.difficulty`), on the reference
  split (``pool_seed``) for every seed, so a stratum holds the same items in every seed (strata
  are never a training target).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from softlab.arms import ARMS as ARMS  # re-exported: the built-in arms are the rows of softlab.arms.ARM_SPECS
from softlab.arms import (
    VOTES_POOL_PARAMETER,
    ArmSpec,
    arm_key_fields,
    arm_spec,
    forced_teacher_model,
    human_images,
    known_arms,
)
from softlab.budgets import (
    BUDGETS_VERSION,
    annotated_mask,
    check_annotated_fraction,
    check_votes_per_item,
    sampled_vote_labels,
    subsample_votes,
)
from softlab.data import entropy, load_cifar10h, load_human, load_images, soft_labels
from softlab.data.human import HumanLabels
from softlab.generator import (
    SyntheticMnistConfig,
    generate_synthetic_mnist,
    mnist_train_halves,
    official_with_mode_shifts,
)
from softlab.io import atomic_save_npz, config_key, load_npz
from softlab.labels import CONDITIONS, DELIVERY_CONDITIONS, LabelConditions, build_conditions, parse_condition

if TYPE_CHECKING:  # pragma: no cover  (torch-side modules are imported where they are used)
    from softlab.teachers import TeacherConfig
    from softlab.train import MemberResult, TrainConfig

#: Arms whose reference comes from a votes table (``ArmConfig.votes``).
VOTES = "votes"
#: The conditions trained by default: the 10 canonical ones, mass-matched smoothing and the
#: own-data teacher at the human mode.
DEFAULT_CONDITIONS: tuple[str, ...] = CONDITIONS + ("human/smooth-mass", "human/synthetic-own-data")
#: Bumped whenever the protocol changes what a run trains on (it enters every run's cache key).
#: 3: a seed re-draws split and teacher (``resample``); own-data teachers. 4: the largest-remainder
#: stratified subsample (:func:`stratified_subsample`; pools and calibration splits change).
PROTOCOL_VERSION = 4
#: What a seed may re-draw (``ArmConfig.resample``); ``init`` is always re-drawn.
RESAMPLE_SOURCES: tuple[str, ...] = ("init", "split", "teacher")
#: The nested designs of the variance decomposition, smallest first.
NESTED_DESIGNS: tuple[tuple[str, ...], ...] = (("init",), ("init", "split"), ("init", "split", "teacher"))
#: Streams of ``SeedSequence([pool_seed, stream, seed])`` for a seed's split and teacher.
SPLIT_STREAM, TEACHER_STREAM, OWN_DATA_STREAM = 5101, 5102, 5103
#: Parts of a fold's training items cross-fitted by own-data teachers.
OWN_DATA_PARTS = 2
DIFFICULTY = ("easy", "medium", "hard")


@dataclass(frozen=True)
class ArmConfig:
    """Everything that decides an arm's data and targets (not the training).

    ``disjoint_size``: size of the evaluation sample of the disjoint split (0 = all of it, which
    is possible for synthetic-mnist only: elsewhere the teachers train on the rest of that split).
    ``run_folds``: train only the first ``run_folds`` folds (0 = all; the ``stability`` set uses 1).
    ``name``: the arm's name in every table (default: ``dataset``). For ``dataset = "votes"``:
    ``votes`` (path of the votes table) and ``images`` (the image data set whose test split it
    labels) are required.
    """

    dataset: str
    pool_size: int = 0  # 0 = the whole pool; stratified subsample otherwise
    folds: int = 5
    pool_seed: int = 0
    disjoint_size: int = 2000
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    label_seed: int = 0
    teacher: dict[str, Any] = field(default_factory=dict)  # TeacherConfig fields (not seed/exclude)
    n_teachers: int = 3
    synthetic: dict[str, Any] = field(default_factory=dict)  # SyntheticMnistConfig fields
    synthetic_mode_shift: float = 0.18
    calibration_fraction: float = 0.1
    mturk_neither: str = "spread"
    run_folds: int = 0
    name: str = ""
    votes: str = ""
    images: str = ""
    resample: tuple[str, ...] = RESAMPLE_SOURCES
    # annotation budgets (softlab.budgets): both decide what a run trains on, so they enter its key
    votes_per_item: int = 0  # 0 = all votes; else k votes per annotated item, drawn afresh per seed
    annotated_fraction: float = 1.0  # share of annotated items that keep their votes; the rest original/hard

    def __post_init__(self) -> None:
        object.__setattr__(self, "resample", check_resample(self.resample))
        if self.dataset not in known_arms() + (VOTES,):
            raise ValueError(f"dataset: expected one of {known_arms() + (VOTES,)}, got {self.dataset!r}")
        if self.dataset == VOTES:
            if not self.votes:
                raise ValueError(f"votes: arm {self.name or VOTES!r} needs the path of a votes table")
            if self.images not in human_images():
                raise ValueError(
                    f"images: arm {self.name or VOTES!r}: expected one of {human_images()} (the data set "
                    f"whose test split the votes label), got {self.images!r}"
                )
            if not self.name:
                raise ValueError("name: a votes arm needs a name")
        if self.folds < 2:
            raise ValueError(f"folds: expected at least 2 folds, got {self.folds}")
        if self.pool_size < 0:
            raise ValueError(f"pool_size: expected 0 (all) or a positive size, got {self.pool_size}")
        if self.disjoint_size < 0:
            raise ValueError(f"disjoint_size: expected 0 (all) or a positive size, got {self.disjoint_size}")
        if self.disjoint_size == 0 and self.teachers_on_disjoint:
            raise ValueError(
                f"disjoint_size: 0 (all) is not possible for the {self.dataset} arm, whose teachers train "
                "on the part of the disjoint split outside the evaluation sample; give a size"
            )
        if self.n_teachers < 1:
            raise ValueError(f"n_teachers: expected at least 1, got {self.n_teachers}")
        if not 0.0 <= self.synthetic_mode_shift <= 0.5:
            raise ValueError(f"synthetic_mode_shift: expected a rate in [0, 0.5], got {self.synthetic_mode_shift}")
        if not 0.0 < self.calibration_fraction < 0.5:
            raise ValueError(f"calibration_fraction: expected a share in (0, 0.5), got {self.calibration_fraction}")
        if not 0 <= self.run_folds <= self.folds:
            raise ValueError(f"run_folds: expected 0 (all) or 1..{self.folds}, got {self.run_folds}")
        if "split" in self.resample and self.run_folds not in (0, self.folds):
            raise ValueError(
                f"run_folds: {self.run_folds} with resample {list(self.resample)}: a seed that re-draws the split "
                "would evaluate different items in every seed; expected run_folds 0 (all folds), or resample "
                "without 'split'"
            )
        if not self.conditions:
            raise ValueError("conditions: expected at least one condition")
        for c in self.conditions:
            parse_condition(c)
        check_votes_per_item(self.votes_per_item or None)
        check_annotated_fraction(self.annotated_fraction)
        needs_votes = self.votes_per_item > 0 or any(c in DELIVERY_CONDITIONS for c in self.conditions)
        if needs_votes and not self.takes_votes_budgets:
            raise ValueError(
                f"votes_per_item / human/sampled: the {self.dataset} arm's reference is the {self.reference_name}'s "
                "distribution, not votes; use them on an arm with vote counts (fashion-mnist, cifar10, votes)"
            )

    @property
    def spec(self) -> ArmSpec | None:
        """The arm's row of :data:`softlab.arms.ARM_SPECS` (None for a votes arm, which has none)."""
        return None if self.dataset == VOTES else arm_spec(self.dataset)

    @property
    def reference_name(self) -> str:
        """What the arm's reference is called (``human`` or ``generator``)."""
        return "human" if self.spec is None else self.spec.reference_name

    @property
    def generated(self) -> bool:
        """Whether the pool is generated with its reference (the synthetic generator)."""
        return self.spec is not None and self.spec.generated

    @property
    def teachers_on_disjoint(self) -> bool:
        """Whether the teachers train on the disjoint split outside its evaluation sample."""
        return self.spec is None or self.spec.teachers == "disjoint"

    @property
    def takes_votes_budgets(self) -> bool:
        """Whether the annotation budgets apply: the reference is made of votes (a votes arm's is)."""
        return self.spec is None or self.spec.votes_budgets

    @property
    def budgeted(self) -> bool:
        """Whether an annotation budget applies (fewer votes per item, or fewer annotated items)."""
        return self.votes_per_item > 0 or self.annotated_fraction < 1.0

    def folds_to_run(self) -> list[int]:
        return list(range(self.run_folds or self.folds))

    @property
    def arm_name(self) -> str:
        return self.name or self.dataset

    @property
    def image_dataset(self) -> str:
        """The data set the pool's images come from."""
        return self.images if self.spec is None else self.spec.images

    def key_dict(self) -> dict[str, Any]:
        """The fields that decide a run's numbers (``conditions`` and ``run_folds`` only say
        which runs exist, so they are left out)."""
        d = asdict(self)
        d.pop("conditions")
        d.pop("run_folds")
        d.pop("name")
        for extra in ("votes", "images"):  # votes arms: the table's content enters data_versions
            if not d[extra]:
                d.pop(extra)
        own = () if self.spec is None else self.spec.key_fields
        for only_some_arms in arm_key_fields():  # e.g. the generator's settings: synthetic-mnist only
            if only_some_arms not in own:
                d.pop(only_some_arms)
        if "teacher" in self.resample:
            d.pop("n_teachers")  # one teacher per seed
        if not self.votes_per_item:  # the default (all votes) keeps every earlier run's key
            d.pop("votes_per_item")
        if self.annotated_fraction == 1.0:
            d.pop("annotated_fraction")
        if self.budgeted:
            d["budgets_version"] = BUDGETS_VERSION
        return d

    def resamples(self, source: str) -> bool:
        """Whether a seed re-draws ``source`` (one of :data:`RESAMPLE_SOURCES`)."""
        return source in self.resample


def check_resample(value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of :data:`RESAMPLE_SOURCES` in their canonical order; ``init`` must
    be among them (the trainer always derives initial weights and batch order from the seed)."""
    names = [value] if isinstance(value, str) else list(value)
    unknown = [v for v in names if v not in RESAMPLE_SOURCES]
    if unknown or len(set(names)) != len(names) or "init" not in names:
        raise ValueError(
            f"resample: got {names!r}; expected distinct entries of {list(RESAMPLE_SOURCES)} including 'init'"
        )
    return tuple(v for v in RESAMPLE_SOURCES if v in names)


# ----------------------------------------------------------------------------- folds and samples


def stratified_folds(labels: np.ndarray, k: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Assign each item a fold in ``0..k-1``: within each class, a seeded permutation dealt
    round-robin (continuing across classes), so folds differ in size by at most one.

    ``groups`` (non-negative ints): the items of group 0 are dealt first, then group 1, …, each
    by the same rule, so every group, and every (group, class) cell, spreads evenly over folds
    (±1) — the annotated items of a partly annotated pool, and among them the mode-shifted ones
    (a class is then balanced to within ± the number of groups)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    g = np.zeros(len(labels), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    offset = 0
    for group in np.unique(g):
        for c in np.unique(labels):
            idx = np.flatnonzero((labels == c) & (g == group))
            idx = idx[rng.permutation(len(idx))]
            folds[idx] = (np.arange(len(idx)) + offset) % k
            offset += len(idx)
    return folds


def stratified_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded subsample of ``size`` items, proportional per class.

    Class ``c`` (``n_c`` of ``N`` items) gets ``⌊size · n_c / N⌋`` items plus one more for the
    classes with the largest remainders (equal remainders in seeded random order) — the
    largest-remainder rule, so each class contributes ``size · n_c / N`` items to within one —
    and its items are a seeded random choice among its own. ``size`` 0 keeps everything.
    """
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = size * counts / len(labels)
    take = np.floor(quota).astype(np.int64)
    left = size - int(take.sum())
    order = np.lexsort((rng.random(len(classes)), -(quota - take)))
    take[order[:left]] += 1
    out = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        out.append(idx[rng.permutation(len(idx))[:k]])
    return np.sort(np.concatenate(out)).astype(np.int64)


def calibration_split(
    official: np.ndarray, annotated: np.ndarray, train_pos: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Sorted positions (a subset of ``train_pos``) set apart for post-hoc calibration: a seeded
    ``fraction`` of the annotated and of the other training items, each stratified by official
    label (:func:`stratified_subsample`)."""
    is_ann = np.isin(train_pos, annotated)
    out = []
    for k, part in enumerate((train_pos[is_ann], train_pos[~is_ann])):
        if len(part) == 0:
            continue
        size = max(1, round(fraction * len(part)))
        seq = np.random.SeedSequence([int(seed), k])
        out.append(part[stratified_subsample(official[part], size, int(seq.generate_state(1)[0]))])
    return np.sort(np.concatenate(out)) if out else np.empty(0, dtype=np.int64)


def disjoint_sample(n_split: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of the disjoint evaluation sample (``size`` 0 = all)."""
    if size == 0 or size >= n_split:
        return np.arange(n_split, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_split, size=size, replace=False)).astype(np.int64)


def _sub_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# ----------------------------------------------------------------------------- the arm


@dataclass(frozen=True)
class SeedSplit:
    """One seed's fold assignment and calibration splits (pool positions)."""

    folds: np.ndarray  # (N,) fold of each pool item
    calibration: dict[int, np.ndarray]  # fold -> positions set apart for post-hoc calibration


def draw_split(official: np.ndarray, annotated: np.ndarray, groups: np.ndarray, cfg: ArmConfig, seed: int) -> SeedSplit:
    """Folds (:func:`stratified_folds` with ``groups``) and each fold's calibration split
    (:func:`calibration_split`), all drawn from ``seed``."""
    folds = stratified_folds(official, cfg.folds, seed, groups=groups)
    calibration = {
        fold: calibration_split(
            official, annotated, np.flatnonzero(folds != fold), cfg.calibration_fraction, _sub_seed(seed, 77, fold)
        )
        for fold in range(cfg.folds)
    }
    return SeedSplit(folds, calibration)


@dataclass(eq=False)
class TeacherSource:
    """Where an arm's (big) teachers come from: their data and how a seed picks one.

    ``exclude``: positions of the teacher split the teachers never see; ``pool_positions``:
    positions of the pool in the test split (None: the pool is generated, ``pool_images`` holds its
    uint8 images, synthetic MNIST)."""

    dataset: str
    exclude: np.ndarray
    pool_positions: np.ndarray | None
    pool_images: np.ndarray | None


@dataclass(eq=False)
class Arm:
    """Prepared data of one arm. Positions ``0..N-1`` index the pool.

    ``folds`` and ``calibration`` are the **reference split** (drawn from ``pool_seed``): a seed's
    own split is :meth:`split` (the same object when the arm does not resample the split). Every
    position method takes the run's ``seed`` (None: the reference split)."""

    config: ArmConfig
    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    official: np.ndarray  # (N,) int64
    item_ids: np.ndarray  # (N,) ids in the source split (test index, or generated index)
    annotated: np.ndarray  # (n,) sorted positions of the labelled items in the pool
    reference: np.ndarray  # (n, C) human (or generator) distribution of those items
    reference_name: str  # "human" or "generator"
    folds: np.ndarray  # (N,) fold of each pool item (reference split)
    calibration: dict[int, np.ndarray]  # fold -> positions set apart for post-hoc calibration (reference split)
    fold_groups: np.ndarray  # (N,) 0 mode-shifted, 1 other annotated, 2 unannotated (dealt in this order)
    teacher_source: TeacherSource
    disjoint_images: np.ndarray
    disjoint_labels: np.ndarray
    classes: tuple[str, ...]
    counts: np.ndarray | None = None  # (n, C) vote counts of the annotated items (None: a generator reference)
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    # --------------------------------------------------------------- positions
    @property
    def name(self) -> str:
        return self.config.arm_name

    @property
    def n_items(self) -> int:
        return len(self.official)

    @property
    def n_classes(self) -> int:
        return int(self.reference.shape[1])

    def split_seed(self, seed: int | None) -> int:
        """The seed of run seed ``seed``'s split: ``pool_seed`` unless the split is resampled."""
        if seed is None or not self.config.resamples("split"):
            return int(self.config.pool_seed)
        return _sub_seed(self.config.pool_seed, SPLIT_STREAM, seed)

    def split(self, seed: int | None = None) -> SeedSplit:
        """The folds and calibration splits of seed ``seed`` (None: the reference split)."""
        s = self.split_seed(seed)
        if s == self.split_seed(None):
            return SeedSplit(self.folds, self.calibration)
        key = ("split", s)
        if key not in self._memo:
            self._memo[key] = draw_split(self.official, self.annotated, self.fold_groups, self.config, s)
        return self._memo[key]

    def folds_of(self, seed: int | None = None) -> np.ndarray:
        return self.split(seed).folds

    def heldout_positions(self, fold: int, seed: int | None = None) -> np.ndarray:
        return np.flatnonzero(self.split(seed).folds == fold)

    def calibration_positions(self, fold: int, seed: int | None = None) -> np.ndarray:
        return self.split(seed).calibration[fold]

    def train_positions(self, fold: int, seed: int | None = None) -> np.ndarray:
        """The items a fold-``fold`` model of ``seed`` trains on: the other folds minus the calibration split."""
        sp = self.split(seed)
        return np.setdiff1d(np.flatnonzero(sp.folds != fold), sp.calibration[fold])

    def watch_positions(self, fold: int, seed: int | None = None) -> np.ndarray:
        """Watched items of a fold-``fold`` run: its held-out fold, then its calibration split."""
        return np.concatenate([self.heldout_positions(fold, seed), self.calibration_positions(fold, seed)])

    # --------------------------------------------------------------- teachers
    def teacher_of(self, seed: int) -> int:
        """The seed of the (big) teacher whose probabilities seed ``seed``'s ``synthetic`` targets use."""
        if self.config.resamples("teacher"):
            return _sub_seed(self.config.pool_seed, TEACHER_STREAM, seed)
        return int(seed) % self.config.n_teachers

    def teacher_config(self, teacher_seed: int) -> TeacherConfig:
        src = self.teacher_source
        return _teacher_config(src.dataset, self.config, teacher_seed, src.exclude)

    def prepare_teachers(self, seeds: Sequence[int], progress: bool = False) -> None:
        """Train (batched, :func:`softlab.teachers.train_teachers`) or load the big teachers of
        ``seeds`` and keep their probabilities on the pool."""
        from softlab.teachers import teacher_probs, train_teachers

        memo = self._memo.setdefault("teachers", {})
        wanted = [t for t in dict.fromkeys(self.teacher_of(s) for s in seeds) if t not in memo]
        if not wanted:
            return
        cfgs = [self.teacher_config(t) for t in wanted]
        teachers = train_teachers(cfgs, progress=progress)
        src = self.teacher_source
        for t, tcfg, teacher in zip(wanted, cfgs, teachers):
            if src.pool_positions is None:
                assert src.pool_images is not None
                probs = teacher.predict_proba(src.pool_images)
            else:
                probs = teacher_probs(tcfg.dataset, "test", tcfg, progress=progress)[src.pool_positions]
            probs = np.asarray(probs, dtype=np.float32)
            probs.setflags(write=False)
            memo[t] = (probs, len(teacher.train_indices), len(tcfg.exclude))

    def teacher_probs_of(self, seed: int) -> np.ndarray:
        """(N, C) float32 out-of-sample probabilities of seed ``seed``'s teacher on the pool."""
        t = self.teacher_of(seed)
        if t not in self._memo.get("teachers", {}):
            self.prepare_teachers([seed])
        return self._memo["teachers"][t][0]

    @property
    def teacher_probs(self) -> np.ndarray:
        """(n_teachers, N, C): the probabilities of the teachers prepared so far, in teacher-seed order."""
        memo = self._memo.get("teachers", {})
        return np.stack([memo[t][0] for t in sorted(memo)])

    @property
    def teacher_info(self) -> pd.DataFrame:
        """One row per prepared (big) teacher: seed, training images, accuracy on the pool."""
        memo = self._memo.get("teachers", {})
        rows = []
        for t in sorted(memo):
            probs, n_train, n_excl = memo[t]
            rows.append(
                {
                    "arm": self.name,
                    "teacher": "big",
                    "seed": t,
                    "training images": n_train,
                    "excluded images": n_excl,
                    "accuracy on the pool (official)": float((probs.argmax(1) == self.official).mean()),
                    "accuracy on labelled items (reference mode)": float(
                        (probs[self.annotated].argmax(1) == self.reference.argmax(1)).mean()
                    ),
                }
            )
        return pd.DataFrame(rows)

    # --------------------------------------------------------------- own-data teachers
    def own_data_parts(self, seed: int, fold: int) -> np.ndarray:
        """(n_train,) part (``0..OWN_DATA_PARTS-1``) of each training item of run (seed, fold), in
        :meth:`train_positions` order: stratified by official label and annotation group."""
        train = self.train_positions(fold, seed)
        return stratified_folds(
            self.official[train],
            OWN_DATA_PARTS,
            _sub_seed(self.config.pool_seed, OWN_DATA_STREAM, seed, fold),
            groups=self.fold_groups[train],
        )

    def _own_data_key(self, seed: int, fold: int) -> str:
        from softlab.teachers import TEACHER_VERSION
        from softlab.train import TRAINER_VERSION

        tcfg = self.teacher_config(0)
        return config_key(
            {
                "kind": "own-data-teacher",
                "arm": self.config.key_dict(),
                "data": data_versions(self.config),
                "protocol_version": PROTOCOL_VERSION,
                "teacher_version": TEACHER_VERSION,
                "trainer": TRAINER_VERSION,
                "teacher": {
                    k: v for k, v in asdict(tcfg).items() if k not in ("seed", "exclude", "n_train", "dataset")
                },
                "parts": OWN_DATA_PARTS,
                "seed": int(seed),
                "fold": int(fold),
            }
        )

    def prepare_own_data_teachers(self, seeds: Sequence[int], progress: bool = False) -> None:
        """Cross-fitted own-data teacher probabilities of every (seed, fold) of ``seeds``: loaded
        from the cache, or all missing ones trained in one batched call and cached (atomic files)."""
        from softlab.paths import cache_dir
        from softlab.teachers import model_config
        from softlab.train import Member, TrainConfig, train_members

        memo = self._memo.setdefault("own-data", {})
        folder = cache_dir() / "own-data-teachers"
        todo = []
        for seed in seeds:
            for fold in self.config.folds_to_run():
                if (seed, fold) in memo:
                    continue
                path = folder / f"{self._own_data_key(seed, fold)}.npz"
                if path.exists():
                    memo[(seed, fold)] = load_npz(path)["probs"]
                else:
                    todo.append((seed, fold, path))
        if not todo:
            return
        tcfg = self.teacher_config(0)
        c, h, w = (int(v) for v in self.images.shape[1:])
        mcfg = replace(model_config(tcfg), in_shape=(c, h, w))
        train_cfg = TrainConfig(
            model=mcfg,
            epochs=tcfg.epochs,
            batch_size=tcfg.batch_size,
            lr=tcfg.lr,
            weight_decay=tcfg.weight_decay,
            record_dynamics=False,
        )
        onehot = np.eye(self.n_classes, dtype=np.float32)[self.official]
        members, where = [], []
        for seed, fold, path in todo:
            train = self.train_positions(fold, seed)
            parts = self.own_data_parts(seed, fold)
            for part in range(OWN_DATA_PARTS):
                members.append(
                    Member(
                        seed=_sub_seed(self.config.pool_seed, OWN_DATA_STREAM, seed, fold, part, 1),
                        targets=onehot,
                        train_idx=train[parts != part],
                        name=f"{self.name}:own-data-teacher:seed{seed}:fold{fold}:part{part}",
                        watch_idx=train[parts == part],
                        record_dynamics=False,
                    )
                )
                where.append((seed, fold, path, part))
        if progress:
            print(f"[{self.name}] training {len(members)} own-data teachers", flush=True)
        results = train_members(self.images, members, train_cfg, progress=progress)
        out: dict[tuple[int, int], np.ndarray] = {}
        for (seed, fold, _path, part), res in zip(where, results):
            if res.diverged or res.watch_probs is None:
                raise RuntimeError(f"own-data teacher training failed: {res.message or res.name}")
            probs = out.setdefault((seed, fold), np.zeros((len(self.train_positions(fold, seed)), self.n_classes)))
            probs[self.own_data_parts(seed, fold) == part] = res.watch_probs
        for seed, fold, path in todo:
            p = out[(seed, fold)].astype(np.float32)
            p /= p.sum(axis=1, keepdims=True)
            atomic_save_npz(path, probs=p)
            memo[(seed, fold)] = p

    def own_data_probs(self, seed: int, fold: int) -> np.ndarray:
        """(n_train, C) cross-fitted own-data teacher probabilities of run (seed, fold)'s training
        items, in :meth:`train_positions` order."""
        if (seed, fold) not in self._memo.get("own-data", {}):
            self.prepare_own_data_teachers([seed])
        return self._memo["own-data"][(seed, fold)]

    def teacher_accuracies(self, seeds: Sequence[int]) -> pd.DataFrame:
        """Both teachers of every run (seed, fold), side by side, on the run's own training items
        (the items whose targets they make): the big teacher (trained on the disjoint split) and
        the own-data teachers (cross-fitted on the run's training items). One row per (seed, fold,
        teacher): ``teacher`` (``big``/``own-data``), ``training images`` (per teacher),
        ``accuracy (official)`` and ``accuracy on labelled items (reference mode)``."""
        rows = []
        for seed in seeds:
            for fold in self.config.folds_to_run():
                train = self.train_positions(fold, seed)
                ann = np.isin(train, self.annotated)
                ref_mode = self.reference[np.searchsorted(self.annotated, train[ann])].argmax(1)
                big = self.teacher_probs_of(seed)[train]  # prepares the teacher if needed
                big_n = int(self._memo["teachers"][self.teacher_of(seed)][1])
                for name, probs, n_train in (
                    ("big", big, big_n),
                    ("own-data", self.own_data_probs(seed, fold), len(train) * (OWN_DATA_PARTS - 1) // OWN_DATA_PARTS),
                ):
                    rows.append(
                        {
                            "arm": self.name,
                            "seed": int(seed),
                            "fold": int(fold),
                            "teacher": name,
                            "training images": int(n_train),
                            "accuracy (official)": float((probs.argmax(1) == self.official[train]).mean()),
                            "accuracy on labelled items (reference mode)": float(
                                (probs[ann].argmax(1) == ref_mode).mean()
                            ),
                        }
                    )
        return pd.DataFrame(rows)

    def prepare_seeds(self, seeds: Sequence[int], progress: bool = False) -> None:
        """Everything the grid of ``seeds`` needs trained before its students: the big teachers
        (if any condition is ``synthetic``) and the own-data teachers (if any is ``synthetic-own-data``)."""
        shapes = {parse_condition(c)[1] for c in self.config.conditions}
        if "synthetic" in shapes:
            self.prepare_teachers(seeds, progress=progress)
        if "synthetic-own-data" in shapes:
            self.prepare_own_data_teachers(seeds, progress=progress)

    def reference_full(self) -> np.ndarray:
        """(N, C) reference distribution; NaN rows for unlabelled items."""
        out = np.full((self.n_items, self.n_classes), np.nan)
        out[self.annotated] = self.reference
        return out

    def target_reference(self, positions: np.ndarray) -> np.ndarray:
        """Reference distribution of any pool items: the human (generator) one where annotated,
        else the one-hot official label (what post-hoc calibration fits against)."""
        out = np.eye(self.n_classes)[self.official[positions]]
        ref = self.reference_full()[positions]
        has = ~np.isnan(ref[:, 0])
        out[has] = ref[has]
        return out

    # --------------------------------------------------------------- annotation budgets
    def _vote_counts(self) -> np.ndarray:
        if self.counts is None:
            raise ValueError(
                f"arm {self.name!r}: its reference is a {self.reference_name} distribution, not votes; "
                "votes_per_item and human/sampled need vote counts"
            )
        return self.counts

    def budget_votes(self, seed: int) -> np.ndarray:
        """(n, C) int64 votes of the annotated items that seed ``seed``'s runs train on:
        ``votes_per_item`` votes per item drawn without replacement from its counts (all of them
        when it is 0, or when the item has fewer), a fresh draw per seed
        (:func:`softlab.budgets.subsample_votes`). Evaluation never uses them: held-out items are
        judged against the full ``reference``."""
        key = ("budget_votes", int(seed))
        if key not in self._memo:
            k = self.config.votes_per_item or None
            self._memo[key] = subsample_votes(self._vote_counts(), k, [self.config.label_seed, int(seed)])
        return self._memo[key]

    def budget_annotated(self, seed: int) -> np.ndarray:
        """(n,) bool: the annotated items whose votes seed ``seed``'s runs train on (a seeded,
        official-label-stratified share ``annotated_fraction``; :func:`softlab.budgets.annotated_mask`);
        the others train as if unannotated (``original/hard``)."""
        key = ("budget_annotated", int(seed))
        if key not in self._memo:
            y = self.official[self.annotated]
            self._memo[key] = annotated_mask(y, self.config.annotated_fraction, [self.config.label_seed, int(seed)])
        return self._memo[key]

    def training_reference(self, seed: int) -> np.ndarray:
        """(n, C) reference distributions the training targets of seed ``seed`` are built from:
        the normalised :meth:`budget_votes` when ``votes_per_item`` is set, else ``reference``."""
        if not self.config.votes_per_item:
            return self.reference
        return soft_labels(self.budget_votes(seed).astype(np.float64))

    def epoch_labels(self, seed: int, fold: int, epochs: int) -> np.ndarray:
        """(epochs, N) int64 classes of the ``human/sampled`` run (seed, fold): every epoch, each
        annotated training item (within the budget) gets one vote drawn from its own
        :meth:`budget_votes`; every other row keeps its official label."""
        train = self.train_positions(fold, seed)
        ann_in_train = np.flatnonzero(np.isin(train, self.annotated))
        at = np.searchsorted(self.annotated, train[ann_in_train])
        keep = self.budget_annotated(seed)[at]
        out = np.broadcast_to(self.official, (int(epochs), self.n_items)).copy()
        votes = self.budget_votes(seed)[at[keep]]
        out[:, train[ann_in_train[keep]]] = sampled_vote_labels(
            votes, epochs, [self.config.label_seed, int(seed), int(fold)]
        )
        return out

    # --------------------------------------------------------------- fold-clean conditions
    def _fold_labels(
        self,
        seed: int,
        fold: int,
        conditions: tuple[str, ...],
        teacher: str | None,
        shuffle_seed: int,
        budget_seed: int | None = None,
    ) -> LabelConditions:
        """Conditions of run (seed, fold); ``teacher``: None, ``"big"`` or ``"own-data"``. The
        memo is keyed by what decides the targets (the split, the teacher, the shuffle, the
        budget's draw), so seeds that share them share one object."""
        split_seed = self.split_seed(seed)
        teacher_key = {None: None, "big": ("big", self.teacher_of(seed)), "own-data": ("own", seed)}[teacher]
        key = ("labels", split_seed, fold, conditions, teacher_key, shuffle_seed, budget_seed)
        if key not in self._memo:
            train = self.train_positions(fold, seed)
            ann_in_train = np.flatnonzero(np.isin(train, self.annotated))
            at = np.searchsorted(self.annotated, train[ann_in_train])
            if budget_seed is None:
                ref = self.reference[at]
            else:  # the seed's budget: fewer votes per item, fewer annotated items (ε, T, shuffle follow)
                keep = self.budget_annotated(budget_seed)[at]
                ann_in_train, at = ann_in_train[keep], at[keep]
                ref = self.training_reference(budget_seed)[at]
            tprobs = self.teacher_probs_of(seed)[train] if teacher == "big" else None
            own = self.own_data_probs(seed, fold) if teacher == "own-data" else None
            self._memo[key] = build_conditions(
                self.official[train],
                ann_in_train,
                ref,
                teacher_probs=tprobs,
                own_teacher_probs=own,
                conditions=conditions,
                seed=shuffle_seed,
                human_kind="distribution",
            )
        return self._memo[key]

    def fold_conditions(self, condition: str, seed: int, fold: int) -> LabelConditions:
        """The :class:`LabelConditions` (over the fold's training items, in
        :meth:`train_positions` order) that holds ``condition``'s targets for run (seed, fold).
        Built from those items only; deterministic shapes are shared by all seeds with the same split
        (unless an annotation budget applies: then every seed has its own votes).
        ``human/sampled``: the ``human/human`` targets (the mean of its per-epoch votes)."""
        mode, shape = parse_condition(condition)
        budget = int(seed) if self.config.budgeted else None
        if shape == "human-shuffled":
            return self._fold_labels(
                seed, fold, (f"{mode}/human-shuffled",), None, _sub_seed(self.config.label_seed, seed, fold), budget
            )
        if shape == "synthetic":
            return self._fold_labels(seed, fold, ("original/synthetic", "human/synthetic"), "big", 0, budget)
        if shape == "synthetic-own-data":
            return self._fold_labels(
                seed, fold, ("original/synthetic-own-data", "human/synthetic-own-data"), "own-data", 0, budget
            )
        return self._fold_labels(
            seed,
            fold,
            (
                "original/hard",
                "human/hard",
                "original/smooth",
                "human/smooth",
                "original/smooth-mass",
                "human/smooth-mass",
                "original/human",
                "human/human",
            ),
            None,
            0,
            budget,
        )

    def targets(self, condition: str, seed: int, fold: int) -> np.ndarray:
        """(N, C) float32 targets of run (condition, seed, fold): the fold-clean targets on the
        training items; every other row is the one-hot official label (never trained on)."""
        lc = self.fold_conditions(condition, seed, fold)
        key = ("targets", condition, id(lc))
        if key not in self._memo:
            full = np.eye(self.n_classes, dtype=np.float32)[self.official]
            built = "human/human" if condition in DELIVERY_CONDITIONS else condition
            full[self.train_positions(fold, seed)] = lc.target(built)
            full.setflags(write=False)
            self._memo[key] = (lc, full)  # lc kept alive with its id
        return self._memo[key][1]

    def fitted_table(self, seeds: Sequence[int] = (0,)) -> pd.DataFrame:
        """Per seed and fold: the fitted ε (entropy- and mass-matched), T of the big and of the
        own-data teacher, and what they were fitted on — every number from the run's training
        items only. (Seeds sharing a split and teacher give equal rows.)"""
        shapes = {parse_condition(c)[1] for c in self.config.conditions}
        rows = []
        for seed in seeds:
            for fold in self.config.folds_to_run():
                base = self.fold_conditions("human/hard", seed, fold).fitted
                row = {
                    "arm": self.name,
                    "seed": int(seed),
                    "fold": fold,
                    "teacher": self.teacher_of(seed),
                    "training items": int(base["n_items"]),
                    "labelled training items": int(base["n_annotated"]),
                    "epsilon (entropy-matched)": base["smoothing_epsilon"],
                    "epsilon (mass-matched)": base["smoothing_epsilon_mass"],
                    "T (teacher)": (
                        self.fold_conditions("human/synthetic", seed, fold).fitted["synthetic_temperature"]
                        if "synthetic" in shapes
                        else float("nan")
                    ),
                    "T (own-data teacher)": (
                        self.fold_conditions("human/synthetic-own-data", seed, fold).fitted["own_data_temperature"]
                        if "synthetic-own-data" in shapes
                        else float("nan")
                    ),
                    "mean reference entropy": base["human_mean_entropy"],
                    "mode-shifted share": base["human_frac_mode_shifted"],
                }
                rows.append(row)
        return pd.DataFrame(rows)

    # --------------------------------------------------------------- strata
    def difficulty(self) -> np.ndarray:
        """(n,) ``easy``/``medium``/``hard`` of each annotated item: tertiles of the reference
        entropy fitted on the training items of the item's own fold (reference split), applied
        to the item."""
        from softlab.stats import difficulty_strata, tertile_thresholds

        key = ("difficulty",)
        if key not in self._memo:
            ent = entropy(self.reference)
            fold_of = self.folds[self.annotated]
            out = np.empty(len(self.annotated), dtype=object)
            for fold in np.unique(fold_of):
                train = np.isin(self.annotated, self.train_positions(int(fold)))
                thresholds = tertile_thresholds(ent[train])
                mine = fold_of == fold
                out[mine] = difficulty_strata(ent[mine], thresholds)
            self._memo[key] = out.astype(str)
        return self._memo[key]

    def mode_shifted(self) -> np.ndarray:
        """(n,) bool: the reference mode (ties towards official) differs from the official label."""
        from softlab.data import mode_shifted

        return mode_shifted(self.reference, self.official[self.annotated])


def _teacher_config(dataset: str, cfg: ArmConfig, seed: int, exclude: np.ndarray) -> TeacherConfig:
    """The teacher of arm ``cfg`` with ``seed``, never trained on the ``exclude`` positions of its
    training split. ``dataset`` is kept for callers; the image data set comes from ``cfg``."""
    from softlab.teachers import TeacherConfig

    base = cfg.image_dataset
    fields = {k: v for k, v in cfg.teacher.items() if k not in ("seed", "exclude", "dataset")}
    forced = forced_teacher_model(base)  # cifar10: a CNN (an MLP throws away colour images' spatial structure)
    if forced:
        fields["model"] = forced
    return TeacherConfig(**fields, dataset=base, seed=seed, exclude=tuple(int(i) for i in exclude))


#: The loader of each human reference source (the ``reference`` field of ``softlab.arms.ArmSpec``): the arm's
#: configuration -> its ``HumanLabels`` over the test split. (The ``generator`` reference is made
#: with its pool, in :func:`prepare_arm`.)
REFERENCE_LOADERS: dict[str, Callable[[ArmConfig], HumanLabels]] = {
    "fashion-mnist-h": lambda cfg: load_human("fashion-mnist-h"),
    "mnist-mturk": lambda cfg: load_human("mnist-mturk", neither=cfg.mturk_neither),
    "cifar10h": lambda cfg: load_cifar10h(),
}


def _human_reference(cfg: ArmConfig) -> HumanLabels:
    """The human labels of a human-reference arm, as ``HumanLabels`` over the test split."""
    if cfg.spec is not None:
        return REFERENCE_LOADERS[cfg.spec.reference](cfg)
    from softlab.data.votes import load_votes

    return load_votes(cfg.votes, cfg.images, "test")


def prepare_arm(cfg: ArmConfig, progress: bool = False, seeds: Sequence[int] | None = None) -> Arm:
    """Load the pool, its reference labels and the reference split (folds and calibration
    splits); prepare the teachers of ``seeds`` (default: the shared teachers ``0 … n_teachers − 1``
    of the fixed-teacher design, or seed 0's teacher when each seed draws its own), batched."""
    if cfg.generated:
        syn_cfg = SyntheticMnistConfig(**{"mnist_part": "generator-half", **cfg.synthetic})
        syn = generate_synthetic_mnist(syn_cfg, progress=progress)
        official_all = official_with_mode_shifts(
            syn.pairs, syn.weights, cfg.synthetic_mode_shift, seed=_sub_seed(cfg.pool_seed, 18)
        )
        pos = stratified_subsample(official_all, cfg.pool_size, cfg.pool_seed)
        images_u8 = syn.images[pos]
        official = official_all[pos]
        item_ids = syn.index[pos]
        annotated = np.arange(len(pos))
        reference = syn.soft_labels[pos].astype(np.float64)
        disjoint = load_images("mnist", "test")
        dis = disjoint_sample(len(disjoint.labels), cfg.disjoint_size, cfg.pool_seed)
        mnist_train = load_images("mnist", "train")
        exclude = mnist_train_halves(mnist_train.labels)[0]  # the generator's half
        source = TeacherSource("mnist", exclude, None, images_u8)
        classes = disjoint.classes
        vote_counts = None  # the generator's distributions are not votes
    else:
        image_ds = cfg.image_dataset
        test = load_images(image_ds, "test")
        human = _human_reference(cfg)
        items = np.asarray(human.items, dtype=np.int64)
        counts_all = np.asarray(human.counts, dtype=np.float64)
        keep = stratified_subsample(test.labels, cfg.pool_size, cfg.pool_seed)
        if len(items) == len(test.labels):  # every test image labelled: the pool is all annotated
            order = np.argsort(items)
            pos, annotated, counts = keep, np.arange(len(keep)), counts_all[order][keep]
        else:  # a labelled subset: always in the pool; the rest trains with official labels
            pos = np.union1d(keep, items)
            annotated = np.searchsorted(pos, items)
            order = np.argsort(annotated)
            annotated, counts = annotated[order], counts_all[order]
        images_u8 = test.images[pos]
        official = test.labels[pos].astype(np.int64)
        item_ids = pos.astype(np.int64)
        reference = soft_labels(counts)
        vote_counts = counts if np.array_equal(counts, np.round(counts)) else None  # weighted votes: no budgets
        disjoint = load_images(image_ds, "train")
        dis = disjoint_sample(len(disjoint.labels), cfg.disjoint_size, cfg.pool_seed)
        source = TeacherSource(image_ds, dis, pos.astype(np.int64), None)
        classes = test.classes
    from softlab.data import mode_shifted

    groups = np.full(len(official), 2, dtype=np.int64)  # 0: mode-shifted, 1: other annotated, 2: unannotated
    groups[annotated] = np.where(mode_shifted(reference, official[annotated]), 0, 1)
    reference_split = draw_split(official, annotated, groups, cfg, cfg.pool_seed)
    arm = Arm(
        cfg,
        _as_float(images_u8),
        official,
        item_ids,
        annotated,
        reference,
        cfg.reference_name,
        reference_split.folds,
        reference_split.calibration,
        groups,
        source,
        _as_float(disjoint.images[dis]),
        disjoint.labels[dis].astype(np.int64),
        classes,
        counts=vote_counts,
    )
    if seeds is None:
        seeds = [0] if cfg.resamples("teacher") else list(range(cfg.n_teachers))
    arm.prepare_teachers(seeds, progress=progress)
    return arm


def _as_float(images_u8: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W) → float32 (n, 1, H, W) in [0, 1]; colour (n, H, W, 3) → (n, 3, H, W)."""
    x = np.asarray(images_u8)
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
    return (x.astype(np.float32) / 255.0)[:, None]


def prepare_arms(arm_configs: Mapping[str, ArmConfig], progress: bool = False) -> tuple[dict[str, Arm], dict[str, str]]:
    """Prepare every arm whose data is available: ``(arms by name, {name: one-line reason})``
    — an arm whose images cannot be had here (CIFAR-10 offline) is skipped, never an error."""
    from softlab.data.cifar import DataUnavailable

    prepared, skipped = {}, {}
    for name, cfg in arm_configs.items():
        try:
            prepared[name] = prepare_arm(cfg, progress=progress)
        except DataUnavailable as exc:
            skipped[name] = str(exc)
    return prepared, skipped


# ----------------------------------------------------------------------------- the grid


def data_versions(cfg: ArmConfig | str) -> dict[str, Any]:
    """Checksums of the files an arm's numbers depend on (they enter every run's cache key):
    the images, the human-label file, and for a votes arm the SHA-256 of the votes table."""
    from softlab.data.human import HUMAN_FILES
    from softlab.data.images import DATASETS
    from softlab.io import sha256_file

    cfg = cfg if isinstance(cfg, ArmConfig) else ArmConfig(cfg)
    images = cfg.image_dataset
    if images == "cifar10":
        from softlab.data.cifar import CIFAR10

        out: dict[str, Any] = {"images": dict(CIFAR10.md5)}
    else:
        out = {"images": DATASETS[images].md5}
    if cfg.spec is not None and cfg.spec.reference_file:
        out["human"] = HUMAN_FILES[cfg.spec.reference_file].sha256
    if cfg.dataset == VOTES:
        out["votes_sha256"] = sha256_file(cfg.votes)
    return out


#: Conditions whose targets no annotation budget changes: ``original/hard`` trains on the official
#: labels of every training item whatever votes were collected (a budget's items without votes
#: train on ``original/hard`` too). Every other condition takes its mode, its fitted ε or T, or its
#: shuffle from the (sub)sampled votes.
BUDGET_FREE_CONDITIONS: tuple[str, ...] = ("original/hard",)


def member_key(
    arm_cfg: ArmConfig, train_key: dict[str, Any], condition: str, seed: int, fold: int, training_dynamics: bool = True
) -> dict[str, Any]:
    """The full configuration of one run (its cache key): data and label versions, the arm's
    protocol settings, condition, seed, fold, model and hyper-parameters, and whether its
    training dynamics are stored. (The store adds the trainer version.) A condition whose
    targets no annotation budget changes (:data:`BUDGET_FREE_CONDITIONS`) keys as in the
    unbudgeted arm, so budget cells load those runs from the book's cache instead of training
    bit-identical copies."""
    if condition in BUDGET_FREE_CONDITIONS and arm_cfg.budgeted:
        from dataclasses import replace as _replace

        arm_cfg = _replace(arm_cfg, votes_per_item=0, annotated_fraction=1.0)
    return {
        "arm": arm_cfg.key_dict(),
        "data": data_versions(arm_cfg),
        "train": train_key,
        "condition": condition,
        "seed": int(seed),
        "fold": int(fold),
        "protocol_version": PROTOCOL_VERSION,
        "training_dynamics": bool(training_dynamics and train_key.get("record_dynamics", True)),
        **({"budgets_version": BUDGETS_VERSION} if condition in DELIVERY_CONDITIONS else {}),
    }


class RunKey(NamedTuple):
    """What tells one run of a grid from another (and whether it stored training dynamics)."""

    condition: str
    seed: int
    fold: int
    training_dynamics: bool


@dataclass
class GridResults:
    """Trained members of one arm: ``runs`` is a table (condition, mode, shape, seed, fold, …)
    aligned with ``results`` (``softlab.train.MemberResult``)."""

    arm: Arm
    runs: pd.DataFrame
    results: list[MemberResult]

    def run_keys(self) -> list[RunKey]:
        """:class:`RunKey` of every run, in ``runs`` / ``results`` order."""
        columns = (self.runs[c].tolist() for c in ("condition", "seed", "fold", "training_dynamics"))
        return [RunKey(str(c), int(s), int(f), bool(d)) for c, s, f, d in zip(*columns)]

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.runs["seed"].unique())

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(self.runs["condition"]))

    def index(self, condition: str, seed: int, fold: int) -> int:
        sel = (self.runs["condition"] == condition) & (self.runs["seed"] == seed) & (self.runs["fold"] == fold)
        if sel.sum() != 1:
            raise ValueError(f"no single run for condition={condition!r}, seed={seed}, fold={fold}")
        return int(np.flatnonzero(sel.to_numpy())[0])

    def _watched(self, index: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Run ``index``'s number of held-out items and its watched positions (held-out fold, then
        calibration split), final probabilities and per-epoch probabilities on them."""
        fold = int(self.runs["fold"].iloc[index])
        seed = int(self.runs["seed"].iloc[index])
        res = self.results[index]
        if res.watch_idx is None or res.watch_probs is None or res.watch_dynamics is None:
            raise ValueError(f"run {res.name!r} watched no items (grid members watch their held-out fold)")
        n_held = len(self.arm.heldout_positions(fold, seed))
        return n_held, np.asarray(res.watch_idx), np.asarray(res.watch_probs), res.watch_dynamics

    def heldout(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool positions of the labelled items in run ``index``'s held-out fold, and the run's
        final probabilities on them."""
        n_held, watch_idx, watch_probs, _ = self._watched(index)
        pos = watch_idx[:n_held]
        keep = np.isin(pos, self.arm.annotated)
        return pos[keep], watch_probs[:n_held][keep]

    def heldout_dynamics(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool positions of the labelled held-out items of run ``index`` and the run's
        probabilities on them after every epoch, (epochs, n, C) float32."""
        n_held, watch_idx, _, watch_dynamics = self._watched(index)
        pos = watch_idx[:n_held]
        keep = np.isin(pos, self.arm.annotated)
        return pos[keep], np.asarray(watch_dynamics[:, :n_held][:, keep], dtype=np.float32)

    def calibration_probs(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool positions of run ``index``'s calibration items and its final probabilities on them."""
        n_held, watch_idx, watch_probs, _ = self._watched(index)
        return watch_idx[n_held:], watch_probs[n_held:]

    def learning_curves(self) -> pd.DataFrame:
        rows = []
        for row, res in zip(self.runs.itertuples(index=False), self.results):
            for epoch, loss in enumerate(res.train_loss):
                rows.append(
                    {
                        "dataset": row.dataset,
                        "condition": row.condition,
                        "mode": row.mode,
                        "shape": row.shape,
                        "seed": row.seed,
                        "fold": row.fold,
                        "epoch": epoch + 1,
                        "train_loss": float(loss),
                    }
                )
        return pd.DataFrame(rows)

    def dynamics(self, condition: str, seed: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, n, C) training dynamics of one member restricted to its *labelled* training
        items, and those items' pool positions."""
        res = self.results[self.index(condition, seed, fold)]
        if res.dynamics is None:
            raise ValueError(f"run {res.name} recorded no training dynamics (see records_training_dynamics)")
        train_pos = self.arm.train_positions(fold, seed)
        keep = np.isin(train_pos, self.arm.annotated)
        return res.dynamics[:, keep].astype(np.float32), train_pos[keep]

    def diverged(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"member": r.name, "message": r.message} for r in self.results if r.diverged],
            columns=["member", "message"],
        )


# ----------------------------------------------------------------------------- parameters


def configs_from_params(p: Mapping[str, Any]) -> tuple[dict[str, ArmConfig], TrainConfig, list[int]]:
    """Turn a notebook parameter set into (arm configs by name, ``TrainConfig``, seeds).

    Parameters used: ``arms, pool_size, mnist_pool_size, synthetic_items, synthetic_mode_shift,
    folds, run_folds, seeds, epochs, model, hidden, batch_size, lr, teacher_epochs,
    teacher_train_items, n_teachers, generator_epochs, generator_train_items, disjoint_size,
    calibration_fraction, conditions, record_dynamics, resample, votes_per_item, annotated_fraction``
    (0 means "all" for the sizes and for ``votes_per_item``; an empty ``conditions`` list means
    :data:`DEFAULT_CONDITIONS`; ``resample`` defaults to all of :data:`RESAMPLE_SOURCES`).
    """
    from softlab.models import ModelConfig
    from softlab.train import TrainConfig

    teacher = {
        "model": "mlp",
        "hidden": 256,
        "epochs": int(p["teacher_epochs"]),
        "n_train": int(p["teacher_train_items"]) or None,
    }
    unknown = [a for a in p["arms"] if a not in known_arms()]
    if unknown:
        raise ValueError(
            f"arms: unknown arm(s) {unknown}; expected some of {known_arms()} (votes tables: the `votes` parameter)"
        )
    conditions = tuple(p.get("conditions") or DEFAULT_CONDITIONS)
    common: dict[str, Any] = dict(
        folds=int(p["folds"]),
        disjoint_size=int(p["disjoint_size"]),
        teacher=teacher,
        n_teachers=int(p.get("n_teachers", 3)),
        synthetic_mode_shift=float(p.get("synthetic_mode_shift", 0.18)),
        calibration_fraction=float(p.get("calibration_fraction", 0.1)),
        conditions=conditions,
        run_folds=int(p.get("run_folds", 0)),
        resample=check_resample(p.get("resample", RESAMPLE_SOURCES)),
    )
    budget: dict[str, Any] = {  # annotation budgets apply to arms with votes (not the generator reference)
        "votes_per_item": int(p.get("votes_per_item", 0)),
        "annotated_fraction": float(p.get("annotated_fraction", 1.0)),
    }
    arms = {a: _builtin_arm_config(arm_spec(a), p, common, budget) for a in p["arms"]}
    for name, spec in (p.get("votes") or {}).items():
        pool_size = int(p[VOTES_POOL_PARAMETER])
        arms[str(name)] = votes_arm_config(str(name), spec, {**common, **budget}, pool_size=pool_size)
    train = TrainConfig(
        ModelConfig(kind=p["model"], hidden=int(p["hidden"])),
        epochs=int(p["epochs"]),
        batch_size=int(p["batch_size"]),
        lr=float(p["lr"]),
        record_dynamics=bool(p.get("record_dynamics", True)),
        device=str(p.get("device", "auto")),
        precision=str(p.get("precision", "float32")),  # type: ignore[arg-type]  # RULES checked it
        compile_mode=str(p.get("compile_mode", "none")),  # type: ignore[arg-type]
    )
    return arms, train, list(range(int(p["seeds"])))


def _builtin_arm_config(
    spec: ArmSpec, p: Mapping[str, Any], common: Mapping[str, Any], budget: Mapping[str, Any]
) -> ArmConfig:
    """The :class:`ArmConfig` of the built-in arm ``spec`` from parameter set ``p``: its pool sized
    by its ``pool_parameter`` (a generated pool: the generator's item count, the whole of it kept),
    the annotation budgets only where its reference is made of votes."""
    size = int(p[spec.pool_parameter])
    synthetic: dict[str, Any] = {}
    if spec.generated:
        synthetic = {
            "n_items": size,
            "epochs": int(p["generator_epochs"]),
            "train_items": int(p["generator_train_items"]) or None,
        }
    return ArmConfig(
        spec.name,
        pool_size=0 if spec.generated else size,
        synthetic=synthetic,
        **common,
        **(budget if spec.votes_budgets else {}),
    )


def records_training_dynamics(condition: str, seed: int, seeds: Sequence[int]) -> bool:
    """Whether a run records its training-item dynamics: the first seed of every condition (the
    data maps) and every seed of ``original/hard`` (the hard-label cartography question). Other
    runs record only their held-out and calibration items, which claim 3 uses."""
    return int(seed) == int(seeds[0]) or condition == "original/hard"


def votes_arm_config(name: str, spec: Any, common: Mapping[str, Any], pool_size: int = 0) -> ArmConfig:
    """The :class:`ArmConfig` of a votes arm from the ``votes`` parameter's entry ``name``:
    either a path (the images default to MNIST) or a mapping with ``path`` and ``images``
    (``dataset`` is accepted for ``images``), optionally ``pool_size``."""
    from pathlib import Path

    if name in known_arms():
        raise ValueError(f"votes: arm name {name!r} is a built-in arm; choose another name")
    if isinstance(spec, (str, Path)):
        spec = {"path": str(spec)}
    if not isinstance(spec, Mapping) or "path" not in spec:
        raise ValueError(f"votes: entry {name!r}: expected a path or a mapping with 'path' and 'images', got {spec!r}")
    unknown = set(spec) - {"path", "images", "dataset", "pool_size", "split"}
    if unknown:
        raise ValueError(f"votes: entry {name!r}: unknown key(s) {sorted(unknown)}; expected path, images, pool_size")
    if spec.get("split", "test") != "test":
        raise ValueError(
            f"votes: entry {name!r}: votes arms label the test split (the teachers train on the "
            f"training split), got split={spec['split']!r}"
        )
    path = Path(str(spec["path"])).expanduser()
    if not path.is_file():
        raise ValueError(f"votes: entry {name!r}: no votes table at {path}")
    images = str(spec.get("images", spec.get("dataset", "mnist")))
    return ArmConfig(
        VOTES,
        name=name,
        votes=str(path.resolve()),
        images=images,
        pool_size=int(spec.get("pool_size", pool_size)),
        **common,
    )


def grid_members(
    arm: Arm, seeds: Sequence[int], record_dynamics: bool = True, epochs: int = 0
) -> tuple[pd.DataFrame, list[Any]]:
    """The paired grid: one member per (seed, fold, condition). Members of the same seed share
    initial weights and batch order (the trainer derives both from the seed alone). With
    ``record_dynamics`` False (the training configuration records none) no member records
    training dynamics. ``epochs``: the training length, needed by ``human/sampled`` members
    (one drawn vote per item per epoch, :meth:`Arm.epoch_labels`)."""
    from softlab.train import Member

    if epochs < 1 and any(c in DELIVERY_CONDITIONS for c in arm.config.conditions):
        raise ValueError("epochs: human/sampled members need the training length (one vote per item per epoch)")

    rows, members = [], []
    for seed in seeds:
        for fold in arm.config.folds_to_run():
            train_pos = arm.train_positions(fold, seed)
            watch = arm.watch_positions(fold, seed)
            for cond in arm.config.conditions:
                mode, shape = parse_condition(cond)
                meta = {"dataset": arm.name, "condition": cond, "seed": int(seed), "fold": int(fold)}
                record = record_dynamics and records_training_dynamics(cond, seed, seeds)
                rows.append(
                    {
                        "dataset": arm.name,
                        "condition": cond,
                        "mode": mode,
                        "shape": shape,
                        "seed": int(seed),
                        "fold": int(fold),
                        "training_dynamics": record,
                    }
                )
                members.append(
                    Member(
                        seed=int(seed),
                        targets=arm.targets(cond, seed, fold),
                        train_idx=train_pos,
                        name=f"{arm.name}:{cond}:seed{seed}:fold{fold}",
                        meta=meta,
                        watch_idx=watch,
                        record_dynamics=record,
                        epoch_labels=arm.epoch_labels(seed, fold, epochs) if cond in DELIVERY_CONDITIONS else None,
                    )
                )
    return pd.DataFrame(rows), members


def run_arm(
    arm: Arm, train_cfg: Any, seeds: Sequence[int], progress: bool = False, store: Any = None, executor: Any = None
) -> GridResults:
    """Train every member of the arm's paired grid — or load it: each run is cached in ``store``
    (default ``softlab.store.RunStore()``) under its full configuration, and only missing runs
    are trained, group by group (``softlab.distributed``), each run stored as its group finishes.
    ``executor``: where groups train — None reads ``$SOFTLAB_DASK`` (unset: in this process),
    or an address (``"local:2"``, ``"tcp://host:8786"``), a ``distributed.Client`` or an open
    executor (``softlab.distributed.open_executor``)."""
    from softlab.distributed import open_executor
    from softlab.store import RunStore

    store = store if store is not None else RunStore()
    train_cfg = for_images(train_cfg, arm.images.shape[1:])
    arm.prepare_seeds(seeds, progress=progress)
    runs, members = grid_members(arm, seeds, record_dynamics=train_cfg.record_dynamics, epochs=train_cfg.epochs)
    train_key = train_cfg.key_dict()
    configs = [
        member_key(arm.config, train_key, condition, seed, fold, dynamics)
        for condition, seed, fold, dynamics in zip(
            runs["condition"].tolist(), runs["seed"].tolist(), runs["fold"].tolist(), runs["training_dynamics"].tolist()
        )
    ]
    by_key = {store.key(c): m for c, m in zip(configs, members)}
    eval_sets = {"disjoint": arm.disjoint_images}

    with open_executor(executor) as ex:

        def train(missing: list[dict[str, Any]]) -> Any:
            todo = [by_key[store.key(c)] for c in missing]
            if progress:
                print(
                    f"[{arm.name}] training {len(todo)} of {len(members)} runs ({len(members) - len(todo)} cached)",
                    flush=True,
                )
            return ex.train(arm.images, todo, train_cfg, eval_sets=eval_sets, progress=progress)

        results = store.get_or_train(configs, train, progress=progress)
    return GridResults(arm, runs, results)


def for_images(train_cfg: Any, in_shape: Sequence[int]) -> Any:
    """``train_cfg`` with its model's input shape set to ``in_shape`` (unchanged when equal, so
    grey-scale arms keep their cache keys)."""
    from dataclasses import replace

    shape = tuple(int(v) for v in in_shape)
    if tuple(train_cfg.model.in_shape) == shape:
        return train_cfg
    return replace(train_cfg, model=replace(train_cfg.model, in_shape=shape))


def run_arms(
    arm_configs: Mapping[str, ArmConfig],
    train_cfg: Any,
    seeds: Sequence[int],
    progress: bool = False,
    store: Any = None,
    executor: Any = None,
) -> dict[str, GridResults]:
    """Prepare and run every arm (cached runs are loaded, not retrained); ``executor`` as in
    :func:`run_arm`, opened once for all arms."""
    from softlab.distributed import open_executor

    with open_executor(executor) as ex:
        return {
            name: run_arm(
                prepare_arm(cfg, progress=progress, seeds=seeds),
                train_cfg,
                seeds,
                progress=progress,
                store=store,
                executor=ex,
            )
            for name, cfg in arm_configs.items()
        }


# ----------------------------------------------------------------------------- where the variance comes from

#: Conditions and (metric, stratum) pairs of the variance decomposition: held-out accuracy, and the
#: claim-1 metric (debiased soft-reference calibration error on hard items) of ``human/human``.
DECOMPOSITION_CONDITIONS: tuple[str, ...] = ("human/human", "human/synthetic")
DECOMPOSITION_METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("accuracy", "all", DECOMPOSITION_CONDITIONS),
    ("debiased_ce_soft", "hard", ("human/human",)),
)


def design_name(resample: Sequence[str]) -> str:
    """``("init", "split")`` → ``"init+split"``."""
    return "+".join(check_resample(resample))


def nested_design_configs(cfg: ArmConfig, conditions: Sequence[str] = DECOMPOSITION_CONDITIONS) -> dict[str, ArmConfig]:
    """The arm under each nested design of :data:`NESTED_DESIGNS`, with ``conditions`` only and
    a single shared teacher where the teacher is not re-drawn (so that the smaller designs hold
    the teacher fixed, not round-robin). The full design's runs are the book's own runs (same
    cache keys)."""
    from dataclasses import replace as _replace

    out = {}
    for design in NESTED_DESIGNS:
        fields: dict[str, Any] = {"resample": design, "conditions": tuple(conditions), "run_folds": 0}
        if "teacher" not in design:
            fields["n_teachers"] = 1
        out[design_name(design)] = _replace(cfg, **fields)
    return out


def run_nested_designs(
    cfg: ArmConfig,
    train_cfg: Any,
    seeds: Sequence[int],
    conditions: Sequence[str] = DECOMPOSITION_CONDITIONS,
    progress: bool = False,
    store: Any = None,
    executor: Any = None,
) -> dict[str, GridResults]:
    """Train (or load) the arm's ``conditions`` for ``seeds`` under every nested design:
    design name → its :class:`GridResults`."""
    return {
        name: run_arm(prepare_arm(c, progress=progress, seeds=seeds), train_cfg, seeds, progress, store, executor)
        for name, c in nested_design_configs(cfg, conditions).items()
    }


def per_seed_metric(preds: Any, condition: str, metric: str, stratum: str) -> np.ndarray:
    """(S,) ``metric`` (a name of ``softlab.inference.METRICS``) of ``condition`` on ``stratum``
    in each seed's pooled out-of-fold predictions (``preds``: ``softlab.inference.ArmPredictions``)."""
    from softlab.inference import METRICS

    spec = METRICS[metric]
    mask = np.asarray(preds.strata[stratum], dtype=bool)
    arrays = {k: np.asarray(v)[:, mask] for k, v in preds.item_arrays.get(condition, {}).items()}
    probs = np.asarray(preds.probs[condition])[:, mask]
    return np.asarray(spec.function(probs, preds.official[mask], preds.reference[mask], arrays), dtype=np.float64)


def variance_decomposition(
    predictions: Mapping[str, Any],
    metrics: Sequence[tuple[str, str, Sequence[str]]] = DECOMPOSITION_METRICS,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Share of the seed-to-seed variance due to each source (exploratory).

    ``predictions``: design name (``"init"``, ``"init+split"``, ``"init+split+teacher"``) →
    ``ArmPredictions`` of one arm under that design (:func:`run_nested_designs`, then
    ``softlab.report.arm_predictions``). For every (metric, stratum, condition) of ``metrics``:
    ``V_d`` = the across-seed variance (``ddof=1``) of the per-seed metric under design ``d``
    (with a ``confidence`` chi-square interval on ``S − 1`` df); the source a design adds has
    ``increment = V_d − V_{previous design}`` (``V_init`` for ``init``) and ``share = increment /
    V_{full}``. Shares sum to 1; with few seeds an increment can be negative (sampling noise —
    the intervals say how much). One row per (arm, condition, metric, stratum, design)."""
    import scipy.stats as sps

    order = [design_name(d) for d in NESTED_DESIGNS]
    missing = [d for d in order if d not in predictions]
    if missing:
        raise ValueError(f"predictions: missing design(s) {missing}; expected one ArmPredictions per {order}")
    rows = []
    alpha = 1.0 - confidence
    for metric, stratum, conditions in metrics:
        for condition in conditions:
            values = {d: per_seed_metric(predictions[d], condition, metric, stratum) for d in order}
            variances = {d: float(np.var(v, ddof=1)) if len(v) > 1 else float("nan") for d, v in values.items()}
            full = variances[order[-1]]
            previous = 0.0
            for d in order:
                v, n = variances[d], len(values[d])
                df = n - 1
                lo = df * v / sps.chi2.ppf(1 - alpha / 2, df) if df > 0 else float("nan")
                hi = df * v / sps.chi2.ppf(alpha / 2, df) if df > 0 else float("nan")
                rows.append(
                    {
                        "arm": predictions[d].arm,
                        "condition": condition,
                        "metric": metric,
                        "stratum": stratum,
                        "design": d,
                        "source": d.split("+")[-1],
                        "seeds": n,
                        "mean": float(np.mean(values[d])),
                        "variance": v,
                        "variance_ci_low": float(lo),
                        "variance_ci_high": float(hi),
                        "sd": float(np.sqrt(v)),
                        "increment": v - previous,
                        "share": (v - previous) / full if full > 0 else float("nan"),
                    }
                )
                previous = v
    return pd.DataFrame(rows)


def stability_summary(
    preds: Any,
    condition: str = "human/human",
    comparator: str = "human/synthetic",
    metric: str = "accuracy",
    stratum: str = "all",
    target_ratio: float = 0.85,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Claim 2 on a many-seed pool (the ``stability`` set), in one row for chapter 4: seeds, the
    across-seed SD of ``metric`` under both conditions, their variance ratio with the
    Pitman–Morgan interval and p-value, the measured between-seed correlation ``rho``, the smallest
    ratio detectable with 80% power at this seed count, and the seeds the test would need for
    ``target_ratio`` at the measured ``rho`` (``softlab.inference.seeds_for_power``)."""
    x = per_seed_metric(preds, condition, metric, stratum)
    y = per_seed_metric(preds, comparator, metric, stratum)
    return stability_summary_of(
        preds.arm, x, y, condition, comparator, metric, stratum, target_ratio=target_ratio, confidence=confidence
    )


def stability_summary_of(
    arm: str,
    x: np.ndarray,
    y: np.ndarray,
    condition: str = "human/human",
    comparator: str = "human/synthetic",
    metric: str = "accuracy",
    stratum: str = "all",
    target_ratio: float = 0.85,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """:func:`stability_summary` from the per-seed values ``x`` (condition) and ``y`` (comparator)
    of ``arm``, paired by seed (a pool read in chunks of seeds: :func:`softlab.report.chunked_predictions`)."""
    from softlab.inference import pitman_morgan, seeds_for_power, variance_ratio_mde

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"stability_summary_of: x and y must be per-seed vectors of one length, got {x.shape}, {y.shape}"
        )
    pm = pitman_morgan(x, y, confidence)
    rho = float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 else float("nan")
    needed = seeds_for_power(target_ratio, rho) if np.isfinite(rho) and abs(rho) < 1 else -1
    return pd.DataFrame(
        [
            {
                "arm": arm,
                "condition": condition,
                "comparator": comparator,
                "metric": metric,
                "stratum": stratum,
                "seeds": len(x),
                "mean_condition": float(np.mean(x)),
                "mean_comparator": float(np.mean(y)),
                "sd_condition": float(np.std(x, ddof=1)),
                "sd_comparator": float(np.std(y, ddof=1)),
                "variance_ratio": pm.ratio,
                "ci_low": pm.ci_low,
                "ci_high": pm.ci_high,
                "p_value": pm.p_value,
                "rho": rho,
                "mde_ratio": variance_ratio_mde(len(x), rho) if np.isfinite(rho) else float("nan"),
                "seeds_for_power": int(needed),
            }
        ]
    )
