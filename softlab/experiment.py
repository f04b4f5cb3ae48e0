"""The protocol of DESIGN.md for one dataset arm: pool, folds, label conditions, paired grid.

An **arm** is a dataset with a human-labelled (or generator-labelled) pool:

- ``fashion-mnist``: the 10,000 test images, all labelled by Fashion-MNIST-H (optionally a
  stratified subsample, ``pool_size``); the disjoint split is the 60k training split.
- ``mnist``: the 10,000 test images; only the 100 MNIST-MTurk items are human-labelled, so only
  they change with the condition, and their held-out predictions are analysed on their own.
- ``synthetic-mnist``: generated ambiguous digits; the generator's two-class soft label fills
  the reference slot ``h`` (called "generator", never "human"); the official label is the class
  the interpolation started from (``pairs[:, 0]``), so items whose weight on it is below ½
  are "mode-shifted" by construction. The disjoint split is the MNIST test split.

The pool is split into ``folds`` folds stratified by official label (seeded by ``pool_seed``);
each (seed, fold, condition) member trains on the other folds with the condition's targets and
is evaluated on its held-out fold and on a sample of the disjoint split. The same seed gives
every condition the same initial weights and batch order (paired comparisons).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from softlab.data import load_human, load_images
from softlab.data.synthetic_mnist import SyntheticMnistConfig, generate_synthetic_mnist
from softlab.labels import CONDITIONS, LabelConditions, build_conditions, parse_condition

ARMS = ("fashion-mnist", "mnist", "synthetic-mnist")
REFERENCE_NAME = {"fashion-mnist": "human", "mnist": "human", "synthetic-mnist": "generator"}


@dataclass(frozen=True)
class ArmConfig:
    """Everything that decides an arm's data and targets (not the training)."""

    dataset: str
    pool_size: int = 0  # 0 = the whole pool (fashion-mnist, synthetic-mnist); stratified subsample otherwise
    folds: int = 5
    pool_seed: int = 0
    disjoint_size: int = 2000
    conditions: tuple[str, ...] = CONDITIONS
    label_seed: int = 0
    teacher: dict[str, Any] = field(default_factory=dict)  # TeacherConfig fields
    synthetic: dict[str, Any] = field(default_factory=dict)  # SyntheticMnistConfig fields
    mturk_neither: str = "spread"

    def __post_init__(self) -> None:
        if self.dataset not in ARMS:
            raise ValueError(f"dataset: expected one of {ARMS}, got {self.dataset!r}")
        if self.folds < 2:
            raise ValueError(f"folds: expected at least 2 folds, got {self.folds}")
        if self.pool_size < 0:
            raise ValueError(f"pool_size: expected 0 (all) or a positive size, got {self.pool_size}")
        for c in self.conditions:
            parse_condition(c)


@dataclass(frozen=True)
class Arm:
    """Prepared data of one arm. Positions ``0..N-1`` index the pool."""

    config: ArmConfig
    images: np.ndarray          # (N, 1, 28, 28) float32 in [0, 1]
    official: np.ndarray        # (N,) int64
    item_ids: np.ndarray        # (N,) ids in the source split (test index, or generated index)
    annotated: np.ndarray       # (n,) positions of the labelled items in the pool
    reference: np.ndarray       # (n, C) human (or generator) distribution of those items
    reference_name: str         # "human" or "generator"
    labels: LabelConditions
    folds: np.ndarray           # (N,) fold of each pool item
    teacher_probs: np.ndarray   # (N, C) out-of-sample teacher probabilities on the pool
    disjoint_images: np.ndarray
    disjoint_labels: np.ndarray
    classes: tuple[str, ...]

    @property
    def n_items(self) -> int:
        return len(self.official)

    def train_positions(self, fold: int) -> np.ndarray:
        return np.flatnonzero(self.folds != fold)

    def heldout_positions(self, fold: int) -> np.ndarray:
        return np.flatnonzero(self.folds == fold)

    def reference_full(self) -> np.ndarray:
        """(N, C) reference distribution; NaN rows for unlabelled items."""
        out = np.full((self.n_items, self.reference.shape[1]), np.nan)
        out[self.annotated] = self.reference
        return out


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Assign each item a fold in ``0..k-1``: within each class, a seeded permutation dealt
    round-robin (continuing across classes), so folds differ in size by at most one."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return folds


def stratified_subsample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded subsample of ``size`` items, proportional per class.

    Within each class, items get a seeded random rank ``r``; an item's score is
    ``(r + ½) / n_class`` and the ``size`` lowest scores are kept (equal scores in random order),
    so each class contributes ``size · n_class / N`` items to within one. ``size`` 0 keeps
    everything.
    """
    if size <= 0 or size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    score = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        score[idx] = (rng.permutation(len(idx)) + 0.5) / len(idx)
    order = np.lexsort((rng.random(len(labels)), score))
    return np.sort(order[:size])


def _teacher(dataset: str, cfg: ArmConfig):
    from softlab.teachers import TeacherConfig

    base = "mnist" if dataset == "synthetic-mnist" else dataset
    return TeacherConfig(**{**cfg.teacher, "dataset": base})


def prepare_arm(cfg: ArmConfig, progress: bool = False) -> Arm:
    """Load the pool, its reference labels, teacher probabilities, folds and the 10 conditions."""
    from softlab.teachers import teacher_probs, teacher_probs_on

    ds = cfg.dataset
    rng = np.random.default_rng(cfg.pool_seed)
    if ds == "synthetic-mnist":
        syn = generate_synthetic_mnist(SyntheticMnistConfig(**cfg.synthetic), progress=progress)
        official_all = syn.pairs[:, 0].astype(np.int64)
        pos = stratified_subsample(official_all, cfg.pool_size, cfg.pool_seed)
        images_u8 = syn.images[pos]
        official = official_all[pos]
        item_ids = syn.index[pos]
        annotated = np.arange(len(pos))
        reference = syn.soft_labels[pos].astype(np.float64)
        tprobs = teacher_probs_on(images_u8, _teacher(ds, cfg))
        disjoint = load_images("mnist", "test")
        classes = disjoint.classes
    else:
        test = load_images(ds, "test")
        if ds == "fashion-mnist":
            human = load_human("fashion-mnist-h")
            pos = stratified_subsample(test.labels, cfg.pool_size, cfg.pool_seed)
            annotated = np.arange(len(pos))
            counts = human.counts[pos]
        else:
            human = load_human("mnist-mturk", neither=cfg.mturk_neither)
            keep = stratified_subsample(test.labels, cfg.pool_size, cfg.pool_seed)
            pos = np.union1d(keep, human.items)  # the human-labelled items are always in the pool
            annotated = np.searchsorted(pos, human.items)
            counts = human.counts
        images_u8 = test.images[pos]
        official = test.labels[pos].astype(np.int64)
        item_ids = pos.astype(np.int64)
        reference = counts / counts.sum(axis=1, keepdims=True)
        tprobs = teacher_probs(ds, "test", _teacher(ds, cfg))[pos]
        disjoint = load_images(ds, "train")
        classes = test.classes
    labels = build_conditions(official, annotated, reference, teacher_probs=tprobs[annotated],
                              conditions=cfg.conditions, seed=cfg.label_seed, human_kind="distribution")
    folds = stratified_folds(official, cfg.folds, cfg.pool_seed)
    dis = np.sort(rng.choice(len(disjoint.labels), size=min(cfg.disjoint_size, len(disjoint.labels)), replace=False))
    return Arm(cfg, (images_u8.astype(np.float32) / 255.0)[:, None], official, item_ids, annotated, reference,
               REFERENCE_NAME[ds], labels, folds, tprobs.astype(np.float32),
               (disjoint.images[dis].astype(np.float32) / 255.0)[:, None], disjoint.labels[dis].astype(np.int64), classes)


# ----------------------------------------------------------------------------- the grid

def data_versions(dataset: str) -> dict[str, Any]:
    """Checksums of the files an arm's numbers depend on (they enter every run's cache key)."""
    from softlab.data.human import HUMAN_FILES
    from softlab.data.images import DATASETS

    images = "mnist" if dataset == "synthetic-mnist" else dataset
    human = {"fashion-mnist": "fashion-mnist-h/fmh_counts.csv", "mnist": "mnist-label-errors/mnist_mturk.json"}
    out: dict[str, Any] = {"images": DATASETS[images].md5}
    if dataset in human:
        out["human"] = HUMAN_FILES[human[dataset]].sha256
    return out


def member_key(arm_cfg: ArmConfig, train_key: dict[str, Any], condition: str, seed: int, fold: int) -> dict[str, Any]:
    """The full configuration of one run (its cache key): data and label versions, the arm's
    protocol settings, condition, seed, fold, model and hyper-parameters. (The store adds the
    trainer version.)"""
    arm = asdict(arm_cfg)
    arm.pop("conditions")  # which other conditions run beside this one does not change it
    return {"arm": arm, "data": data_versions(arm_cfg.dataset), "train": train_key, "condition": condition,
            "seed": int(seed), "fold": int(fold), "protocol_version": PROTOCOL_VERSION}


PROTOCOL_VERSION = 1


@dataclass
class GridResults:
    """Trained members of one arm: ``runs`` is a table (condition, mode, shape, seed, fold, …)
    aligned with ``results`` (``softlab.train.MemberResult``)."""

    arm: Arm
    runs: pd.DataFrame
    results: list[Any]

    def heldout(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool positions of the labelled items in run ``index``'s held-out fold, and the run's
        probabilities on them."""
        fold = int(self.runs["fold"].iloc[index])
        pos = self.arm.heldout_positions(fold)
        pos = pos[np.isin(pos, self.arm.annotated)]
        return pos, self.results[index].eval_probs["pool"][pos]

    def learning_curves(self) -> pd.DataFrame:
        rows = []
        for row, res in zip(self.runs.itertuples(index=False), self.results):
            for epoch, loss in enumerate(res.train_loss):
                rows.append({"condition": row.condition, "mode": row.mode, "shape": row.shape, "seed": row.seed,
                             "fold": row.fold, "epoch": epoch + 1, "train_loss": float(loss)})
        return pd.DataFrame(rows)

    def dynamics(self, condition: str, seed: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, n, C) training dynamics of one member restricted to its *labelled* training
        items, and those items' pool positions."""
        sel = (self.runs["condition"] == condition) & (self.runs["seed"] == seed) & (self.runs["fold"] == fold)
        if sel.sum() != 1:
            raise ValueError(f"no single run for condition={condition!r}, seed={seed}, fold={fold}")
        res = self.results[int(np.flatnonzero(sel.to_numpy())[0])]
        train_pos = self.arm.train_positions(fold)
        keep = np.isin(train_pos, self.arm.annotated)
        return res.dynamics[:, keep].astype(np.float32), train_pos[keep]

    def diverged(self) -> pd.DataFrame:
        return pd.DataFrame([{"member": r.name, "message": r.message} for r in self.results if r.diverged])


# ----------------------------------------------------------------------------- parameters

def configs_from_params(p: Mapping[str, Any]):
    """Turn a notebook parameter set into (arm configs by name, ``TrainConfig``, seeds).

    Parameters used: ``arms, pool_size, mnist_pool_size, synthetic_items, folds, seeds, epochs,
    model, hidden, batch_size, lr, teacher_epochs, teacher_train_items, generator_epochs,
    generator_train_items, disjoint_size`` (0 means "all" for the sizes).
    """
    from softlab.models import ModelConfig
    from softlab.train import TrainConfig

    teacher = {"model": "mlp", "hidden": 256, "epochs": int(p["teacher_epochs"]),
               "n_train": int(p["teacher_train_items"]) or None}
    synthetic = {"n_items": int(p["synthetic_items"]), "epochs": int(p["generator_epochs"]),
                 "train_items": int(p["generator_train_items"]) or None}
    pools = {"fashion-mnist": int(p["pool_size"]), "mnist": int(p["mnist_pool_size"]), "synthetic-mnist": 0}
    unknown = [a for a in p["arms"] if a not in ARMS]
    if unknown:
        raise ValueError(f"arms: unknown arm(s) {unknown}; expected some of {ARMS}")
    arms = {a: ArmConfig(a, pool_size=pools[a], folds=int(p["folds"]), disjoint_size=int(p["disjoint_size"]),
                         teacher=teacher, synthetic=synthetic if a == "synthetic-mnist" else {})
            for a in p["arms"]}
    train = TrainConfig(ModelConfig(kind=p["model"], hidden=int(p["hidden"])), epochs=int(p["epochs"]),
                        batch_size=int(p["batch_size"]), lr=float(p["lr"]))
    return arms, train, list(range(int(p["seeds"])))


def grid_members(arm: Arm, seeds: list[int]) -> tuple[pd.DataFrame, list[Any]]:
    """The paired grid: one member per (seed, fold, condition). Members of the same seed share
    initial weights and batch order (the trainer derives both from the seed alone)."""
    from softlab.train import Member

    rows, members = [], []
    for seed in seeds:
        for fold in range(arm.config.folds):
            train_pos = arm.train_positions(fold)
            for cond in arm.config.conditions:
                mode, shape = parse_condition(cond)
                meta = {"dataset": arm.config.dataset, "condition": cond, "seed": seed, "fold": fold}
                rows.append({"dataset": arm.config.dataset, "condition": cond, "mode": mode, "shape": shape,
                             "seed": seed, "fold": fold})
                members.append(Member(seed=seed, targets=arm.labels.target(cond), train_idx=train_pos,
                                      name=f"{arm.config.dataset}:{cond}:seed{seed}:fold{fold}", meta=meta))
    return pd.DataFrame(rows), members


def run_arm(arm: Arm, train_cfg: Any, seeds: list[int], progress: bool = False, store: Any = None,
            executor: Any = None) -> GridResults:
    """Train every member of the arm's paired grid — or load it: each run is cached in ``store``
    (default ``softlab.store.RunStore()``) under its full configuration, and only missing runs
    are trained, group by group (``softlab.distributed``), each run stored as its group finishes.
    ``executor``: where groups train — None reads ``$SOFTLAB_DASK`` (unset: in this process),
    or an address (``"local:2"``, ``"tcp://host:8786"``), a ``distributed.Client`` or an open
    executor (``softlab.distributed.open_executor``)."""
    from softlab.distributed import open_executor
    from softlab.store import RunStore

    store = store if store is not None else RunStore()
    runs, members = grid_members(arm, seeds)
    train_key = train_cfg.key_dict()
    configs = [member_key(arm.config, train_key, r.condition, r.seed, r.fold) for r in runs.itertuples(index=False)]
    by_key = {store.key(c): m for c, m in zip(configs, members)}
    eval_sets = {"pool": arm.images, "disjoint": arm.disjoint_images}

    with open_executor(executor) as ex:
        def train(missing: list[dict[str, Any]]) -> Any:
            todo = [by_key[store.key(c)] for c in missing]
            if progress:
                print(f"[{arm.config.dataset}] training {len(todo)} of {len(members)} runs "
                      f"({len(members) - len(todo)} cached)", flush=True)
            return ex.train(arm.images, todo, train_cfg, eval_sets=eval_sets, progress=progress)

        results = store.get_or_train(configs, train, progress=progress)
    return GridResults(arm, runs, results)


def run_arms(arm_configs: Mapping[str, ArmConfig], train_cfg: Any, seeds: list[int], progress: bool = False,
             store: Any = None, executor: Any = None) -> dict[str, GridResults]:
    """Prepare and run every arm (cached runs are loaded, not retrained); ``executor`` as in
    ``run_arm``, opened once for all arms."""
    from softlab.distributed import open_executor

    with open_executor(executor) as ex:
        return {name: run_arm(prepare_arm(cfg, progress=progress), train_cfg, seeds, progress=progress, store=store,
                              executor=ex)
                for name, cfg in arm_configs.items()}
