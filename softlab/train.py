"""Many-member trainer: seeds × conditions × folds trained as ONE batched computation.

A **member** is one model to train: ``Member(seed, targets, train_idx, name, meta)``.
``train_members(x, members, cfg)`` stacks the members' parameters along a leading member
axis and trains them together (``softlab.models.stacked_forward``: grouped convolutions and
batched matrix products), with the optimizer written on the stacked tensors. Members whose
training subsets have the same size are batched together (each gathers its own items every
step); members with different subset sizes form separate groups.

Definitions
-----------
* Loss (soft-target cross-entropy, nats): for a batch of b items with target rows t_i
  (probabilities) and logits z_i, ``L = (1/b) Σ_i −Σ_c t_ic · log softmax(z_i)_c``.
* Batch order (paired design): in epoch e, member positions ``0 … n−1`` (indices into its
  ``train_idx``) are visited in the order ``batch_order(seed, e, n)`` — a permutation drawn
  from ``numpy.random.default_rng(SeedSequence([seed, e]))``. Batches are consecutive slices
  of ``batch_size`` (the last one may be smaller). Every member with the same seed and subset
  size therefore sees the same batch order whatever its targets, and, through
  ``softlab.models.init_params(cfg, seed)``, the same initial weights.
* Optimizers (same semantics as ``torch.optim.Adam`` / ``torch.optim.SGD``, L2 weight decay
  added to the gradient): Adam ``m ← β1 m + (1−β1) g``, ``v ← β2 v + (1−β2) g²``,
  ``θ ← θ − lr_t/(1−β1^k) · m / (√v/√(1−β2^k) + ε)``; SGD with momentum μ:
  ``buf ← μ buf + g`` (``buf = g`` at the first step), ``θ ← θ − lr_t · buf``.
* Learning-rate schedule, with k = 0-based update index, K = total updates, e = epoch:
  ``constant``: lr; ``cosine``: lr · ½(1 + cos(π k / K)); ``step``: lr · γ^(number of
  milestones m with e ≥ round(m · epochs)).
* Dynamics: after every epoch, in evaluation mode (no dropout), the class probabilities of
  every training item of the member, in ``train_idx`` order: ``(epochs, n_items, C)``.
* Watched items: a member may name items it does *not* train on (``watch_idx``, e.g. its
  held-out fold and a calibration split); their probabilities are recorded after every epoch
  as well (``watch_dynamics``, same dtype as the dynamics) and once more at the end in float32
  (``watch_probs``). Recording never changes the trained numbers.
* Divergence: a member whose batch loss is NaN/±inf is frozen from that step on (its updates
  are zeroed; its working parameters are set to 0 so that nothing non-finite enters the
  shared computation), flagged (``MemberResult.diverged``, ``.message`` naming its name, seed
  and meta) and a ``DivergenceWarning`` is emitted; the other members go on unaffected. Its
  outputs from the epoch of divergence on are NaN.

``train_single_reference`` is the plain one-model loop (``nn.Module`` + ``torch.optim``) with
the same initial weights and batches: the equivalence test's reference and the benchmark's
naive baseline.

CPU note: on glibc systems ``train_members`` raises malloc's mmap/trim thresholds once per
process (:func:`softlab.runtime.tune_cpu_allocator`): the batched activations are tens of MB,
and without this every step would map them fresh and re-fault them from the kernel.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from softlab.models import (
    ModelConfig,
    dropout_layer_widths,
    init_model,
    init_params,
    stack_params,
    stacked_forward,
)
from softlab.runtime import env_cpu_workers, resolve_device, torch_threads, tune_cpu_allocator
from softlab.validation import check_probability_rows, field_error

TRAINER_VERSION = "2"  # 2: per-member fused updates of unaligned parameters (FUSED_ALIGN)
"""Bump whenever a change alters trained numbers: it is part of every cached run's key."""

OptimizerName = Literal["adam", "sgd"]
ScheduleName = Literal["constant", "cosine", "step"]
PrecisionName = Literal["float32", "bfloat16"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]

PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
"""``TrainConfig.precision`` values: plain fp32, or bf16 autocast of the forward pass."""
COMPILE_MODES: tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune")
"""``TrainConfig.compile_mode`` values: eager (``none``) or a ``torch.compile`` mode."""


USE_FUSED_OPTIMIZER = True

#: The fused optimizer kernels run a vector loop over each tensor (in chunks aligned to 16 floats)
#: and a scalar loop over its last ``numel % vector width`` elements, and the two round
#: differently. A stacked parameter whose per-member size is not a multiple of 16 (the output
#: layer's bias: 10) would put a member's elements in the scalar loop or not depending on how many
#: members share the tensor; such parameters are updated one member-view at a time, as for M = 1,
#: so a member's numbers do not depend on its batch companions.
FUSED_ALIGN = 16
"""Use PyTorch's fused optimizer kernels when present (False: plain tensor arithmetic)."""


class DivergenceWarning(RuntimeWarning):
    """A member's loss became NaN/inf; it was frozen and flagged."""


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters shared by all members of a call.

    epochs: passes over each member's training items. batch_size: items per update.
    lr: base learning rate. weight_decay: L2 coefficient added to the gradient (torch.optim
    semantics). momentum: SGD momentum. betas, eps: Adam constants. schedule: see module doc;
    step_gamma / step_milestones (fractions of ``epochs``) parameterise ``"step"``.
    record_dynamics: keep per-epoch probabilities on training items (``dynamics_dtype``).
    device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
    max_members_per_batch: members per batched computation (None: 32 CNN / 128 MLP on CPU,
    256 on GPU).
    cpu_workers: batched groups trained at once on CPU, each in its own thread with
    ``torch.get_num_threads() // cpu_workers`` intra-op threads (None: ``$SOFTLAB_CPU_WORKERS``,
    else 1 — one group after another, every group on all threads). With more than one, the
    members are cut into at least ``cpu_workers`` groups of near-equal size. Small convolutions
    and pooling do not keep two threads busy inside one operation; two single-threaded groups
    side by side do (``benchmarks/bench_trainer.py --cpu-workers 1 2`` measures it). A member's
    numbers agree with the one-worker run to float tolerance (its group size and thread count
    change the kernels' summation order, as ``max_members_per_batch`` does); ignored on GPU.
    Execution settings (device, max_members_per_batch, cpu_workers) do not enter ``key_dict``.
    precision: ``"float32"`` (default) or ``"bfloat16"``: the forward pass (training and
    prediction) runs under ``torch.autocast(device, bfloat16)``; parameters, optimizer state,
    loss and gradients' accumulation stay float32 (mixed precision). Changes the numbers
    (about 1e-2 in probabilities after a few epochs; ``tests/test_train.py`` states the bound).
    compile_mode: ``"none"`` (eager, default) or a ``torch.compile`` mode for the batched
    training step's forward and loss (``train_single_reference`` stays eager). Compiled kernels
    may round differently, so both settings enter ``key_dict`` — but only when not the
    default, so every key computed before they existed is unchanged.
    """

    model: ModelConfig
    epochs: int
    batch_size: int = 128
    optimizer: OptimizerName = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: ScheduleName = "constant"
    step_gamma: float = 0.1
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    record_dynamics: bool = True
    dynamics_dtype: Literal["float16", "float32"] = "float16"
    device: str = "auto"
    max_members_per_batch: int | None = None
    precision: PrecisionName = "float32"
    cpu_workers: int | None = None
    compile_mode: CompileMode = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"TrainConfig.model: expected a ModelConfig, got {type(self.model).__name__}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise field_error(self, "epochs", "a positive int")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise field_error(self, "batch_size", "a positive int")
        if self.optimizer not in ("adam", "sgd"):
            raise field_error(self, "optimizer", "'adam' or 'sgd'")
        if self.schedule not in ("constant", "cosine", "step"):
            raise field_error(self, "schedule", "'constant', 'cosine' or 'step'")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise field_error(self, "lr", "a finite positive float")
        if not self.weight_decay >= 0:
            raise field_error(self, "weight_decay", ">= 0")
        if not 0 <= self.momentum < 1:
            raise field_error(self, "momentum", "a number in [0, 1)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise field_error(self, "betas", "two floats in [0, 1)")
        if self.dynamics_dtype not in ("float16", "float32"):
            raise field_error(self, "dynamics_dtype", "'float16' or 'float32'")
        if self.max_members_per_batch is not None and self.max_members_per_batch < 1:
            raise field_error(self, "max_members_per_batch", "None or >= 1")
        workers = self.cpu_workers
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise field_error(self, "cpu_workers", "None or a positive int")
        if self.precision not in PRECISIONS:
            raise field_error(self, "precision", " or ".join(repr(p) for p in PRECISIONS))
        if self.compile_mode not in COMPILE_MODES:
            raise field_error(self, "compile_mode", ", ".join(repr(c) for c in COMPILE_MODES))
        if not isinstance(self.device, str) or not self.device:
            raise field_error(self, "device", "'auto', 'cpu', 'cuda' or 'cuda:<n>'")
        object.__setattr__(self, "step_milestones", tuple(float(m) for m in self.step_milestones))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def key_dict(self) -> dict[str, Any]:
        """Everything that determines the trained numbers (JSON-able): for cache keys."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["step_milestones"] = list(self.step_milestones)
        d["betas"] = list(self.betas)
        for execution_only in ("device", "max_members_per_batch", "cpu_workers"):
            d.pop(execution_only)
        # numeric settings added later: in the key only when not the default (old keys unchanged)
        for name, default in (("precision", "float32"), ("compile_mode", "none")):
            if d[name] == default:
                d.pop(name)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d["model"]) if isinstance(d["model"], Mapping) else d["model"]
        for k in ("step_milestones", "betas"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class Member:
    """One model to train.

    seed: decides initial weights, batch order and dropout masks.
    targets: (N, C) float32 probability rows, ONE ROW PER ROW OF ``x`` (rows outside
      ``train_idx`` are ignored).
    train_idx: int64 indices into ``x`` of the items this member trains on (e.g. K−1 folds).
    name: label used in messages and results. meta: free JSON-able facts (condition, fold …).
    lr: optional per-member learning rate overriding ``TrainConfig.lr``.
    watch_idx: optional int64 indices into ``x`` of items whose probabilities are recorded after
      every epoch and at the end (items the member does not train on: held-out fold, calibration
      split). Members batched together must watch the same number of items.
    record_dynamics: record this member's training dynamics (when ``TrainConfig.record_dynamics``
      is on); predicting every training item after every epoch costs about half a training
      epoch, so a grid records them only where it uses them.
    epoch_labels: optional (epochs, N) int class per row of ``x`` and epoch: when given, epoch
      ``e`` trains on the one-hot of ``epoch_labels[e]`` instead of ``targets`` (the
      ``human/sampled`` delivery, one vote per item per epoch: :func:`softlab.budgets.sampled_vote_labels`);
      ``targets`` stays the expected target (its mean). Rows outside ``train_idx`` are ignored.
    """

    seed: int
    targets: np.ndarray
    train_idx: np.ndarray
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    watch_idx: np.ndarray | None = None
    record_dynamics: bool = True
    epoch_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or int(self.seed) < 0:
            raise ValueError(f"Member.seed: expected a non-negative int, got {self.seed!r}")
        self.seed = int(self.seed)
        self.targets = np.asarray(self.targets)
        if self.targets.ndim != 2:
            raise ValueError(
                f"Member {self.name!r}: targets must be 2-D (n_items, n_classes), got shape {self.targets.shape}"
            )
        idx = np.asarray(self.train_idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"Member {self.name!r}: train_idx must be a non-empty 1-D integer array, "
                f"got shape {idx.shape} dtype {idx.dtype}"
            )
        self.train_idx = idx.astype(np.int64, copy=False)
        if not self.name:
            self.name = f"seed{self.seed}"
        if self.lr is not None and not (self.lr > 0):
            raise ValueError(f"Member {self.name!r}: lr must be positive, got {self.lr!r}")
        if self.watch_idx is not None:
            w = np.asarray(self.watch_idx)
            if w.ndim != 1 or not np.issubdtype(w.dtype, np.integer):
                raise ValueError(
                    f"Member {self.name!r}: watch_idx must be a 1-D integer array, got shape {w.shape} dtype {w.dtype}"
                )
            self.watch_idx = w.astype(np.int64, copy=False)
        if self.epoch_labels is not None:
            self.epoch_labels = _checked_epoch_labels(self)

    @property
    def n_watch(self) -> int:
        return 0 if self.watch_idx is None else len(self.watch_idx)

    def describe(self) -> str:
        return f"member {self.name!r} (seed={self.seed}, meta={self.meta})"


def _checked_epoch_labels(member: Member) -> np.ndarray:
    """``member.epoch_labels`` as int64 (epochs, N), checked against its targets (one line otherwise)."""
    lab = np.asarray(member.epoch_labels)
    n_rows, n_classes = member.targets.shape
    if lab.ndim != 2 or lab.shape[1] != n_rows or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(
            f"Member {member.name!r}: epoch_labels must be an integer (epochs, {n_rows}) array (one class per "
            f"row of x per epoch), got shape {lab.shape} dtype {lab.dtype}"
        )
    if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(f"Member {member.name!r}: epoch_labels must be classes in 0..{n_classes - 1}")
    return lab.astype(np.int64, copy=False)


@dataclass
class MemberResult:
    """Outputs of one trained member.

    eval_probs[set]: (n_eval, C) float32 final class probabilities on each evaluation set.
    dynamics: (epochs, n_train_items, C) probabilities on the member's training items (in
      ``train_idx`` order) after every epoch, or None when not recorded.
    train_loss: (epochs,) mean soft cross-entropy (nats) over each epoch's training batches.
    diverged / diverged_epoch / message: divergence flag, the 0-based epoch it happened in
      (None if not), and a human-readable message ("" if fine).
    config: ``TrainConfig.key_dict()`` plus the member's effective ``lr``.
    seconds / batch_members: wall time of the batched computation the member was part of and
      how many members shared it.
    params: the trained weights (names and shapes of ``build_model(cfg.model).state_dict()``),
      only when ``train_members(..., keep_params=True)``; not stored by ``softlab.store``.
    watch_idx / watch_dynamics / watch_probs: the member's watched items, their probabilities
      after every epoch ((epochs, n_watch, C), dynamics dtype) and at the end ((n_watch, C)
      float32); None when the member watched nothing.
    """

    name: str
    seed: int
    meta: dict[str, Any]
    config: dict[str, Any]
    train_idx: np.ndarray
    eval_probs: dict[str, np.ndarray]
    dynamics: np.ndarray | None
    train_loss: np.ndarray
    diverged: bool = False
    diverged_epoch: int | None = None
    message: str = ""
    seconds: float = 0.0
    batch_members: int = 1
    params: dict[str, np.ndarray] | None = None
    watch_idx: np.ndarray | None = None
    watch_dynamics: np.ndarray | None = None
    watch_probs: np.ndarray | None = None


# ----------------------------------------------------------------------------- helpers


def batch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order (int64 permutation of 0 … n−1) in which positions are visited in ``epoch``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))
    return rng.permutation(n).astype(np.int64)


def steps_per_epoch(n_items: int, batch_size: int) -> int:
    return -(-n_items // batch_size)


def lr_factor(cfg: TrainConfig, update: int, epoch: int, total_updates: int) -> float:
    """Multiplier of the base learning rate at 0-based ``update`` (in 0-based ``epoch``)."""
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * update / max(total_updates, 1)))
    passed = sum(1 for m in cfg.step_milestones if epoch >= round(m * cfg.epochs))
    return cfg.step_gamma**passed


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch axis (−2) of −Σ_c t_c log softmax(z)_c: (..., B, C) → (...)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean(-1)


def autocast_context(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast(device.type, bfloat16)`` when ``cfg.precision == "bfloat16"``, else a no-op
    (the float32 path runs exactly as it did before precision was a setting)."""
    if cfg.precision == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


BatchLoss = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, "list[torch.Tensor] | None"], torch.Tensor]


def make_batch_loss(cfg: TrainConfig, device: torch.device) -> BatchLoss:
    """The training step's objective ``(params, x (M, b, C, H, W), targets (M, b, K), dropout
    masks) → per-member soft cross-entropy (M,)`` in ``cfg.precision`` (the loss itself always in
    float32), compiled with ``torch.compile(mode=cfg.compile_mode)`` unless that is ``"none"``."""
    model_cfg = cfg.model

    if cfg.precision == "float32":

        def batch_loss(
            params: dict[str, torch.Tensor], xb: torch.Tensor, tb: torch.Tensor, masks: list[torch.Tensor] | None
        ) -> torch.Tensor:
            return soft_cross_entropy(stacked_forward(model_cfg, params, xb, masks), tb)

    else:

        def batch_loss(
            params: dict[str, torch.Tensor], xb: torch.Tensor, tb: torch.Tensor, masks: list[torch.Tensor] | None
        ) -> torch.Tensor:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                logits = stacked_forward(model_cfg, params, xb, masks)
            return soft_cross_entropy(logits.float(), tb)

    if cfg.compile_mode == "none":
        return batch_loss
    compiled: BatchLoss = torch.compile(batch_loss, mode=cfg.compile_mode, dynamic=False)
    return compiled


def _dropout_seed(seed: int) -> int:
    return int(np.random.SeedSequence([int(seed), 0xD50]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _check_inputs(
    x: np.ndarray, members: Sequence[Member], cfg: TrainConfig, eval_sets: Mapping[str, np.ndarray]
) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"x: expected float32 images, got dtype {x.dtype}")
    if x.ndim != 4 or tuple(x.shape[1:]) != cfg.model.in_shape:
        raise ValueError(f"x: expected shape (N, {', '.join(map(str, cfg.model.in_shape))}), got {x.shape}")
    if not members:
        raise ValueError("members: expected at least one Member")
    n_classes = cfg.model.n_classes
    for m in members:
        if m.targets.shape != (len(x), n_classes):
            raise ValueError(
                f"{m.describe()}: targets must have one row per row of x and {n_classes} classes, "
                f"i.e. shape ({len(x)}, {n_classes}); got {m.targets.shape}"
            )
        if m.train_idx.min() < 0 or m.train_idx.max() >= len(x):
            raise ValueError(
                f"{m.describe()}: train_idx must lie in [0, {len(x)}), got range "
                f"[{m.train_idx.min()}, {m.train_idx.max()}]"
            )
        if m.watch_idx is not None and m.watch_idx.size and (m.watch_idx.min() < 0 or m.watch_idx.max() >= len(x)):
            raise ValueError(
                f"{m.describe()}: watch_idx must lie in [0, {len(x)}), got range "
                f"[{m.watch_idx.min()}, {m.watch_idx.max()}]"
            )
        check_probability_rows(m.targets[m.train_idx], f"{m.describe()}: targets", rows=m.train_idx)
    for name, xe in eval_sets.items():
        xe = np.asarray(xe)
        if xe.dtype != np.float32 or xe.ndim != 4 or tuple(xe.shape[1:]) != cfg.model.in_shape:
            raise ValueError(
                f"eval_sets[{name!r}]: expected float32 of shape (n, {', '.join(map(str, cfg.model.in_shape))}), "
                f"got {xe.dtype} {xe.shape}"
            )
    return x


# ----------------------------------------------------------------------------- batched trainer


class _StackedOptimizer:
    """Adam / SGD-momentum on stacked (M, ...) parameters with per-member learning rates.

    Uses PyTorch's fused single-pass kernels (``torch._fused_adam_`` / ``torch._fused_sgd_``,
    the ones behind ``torch.optim.Adam(fused=True)``) on the stacked tensors — one call per
    distinct learning rate, on per-member views when members' rates differ — and falls back to
    plain tensor arithmetic with the same formulas where they are unavailable.
    """

    def __init__(self, cfg: TrainConfig, params: dict[str, torch.Tensor], lr_values: list[float]) -> None:
        self.cfg = cfg
        self.params = params
        device = next(iter(params.values())).device
        self.base_lr = torch.tensor(lr_values, dtype=torch.float32, device=device)  # (M,)
        self.k = 0
        self.state: dict[str, list[torch.Tensor]] = {}
        for name, p in params.items():
            n_state = 2 if cfg.optimizer == "adam" else 1
            self.state[name] = [torch.zeros_like(p) for _ in range(n_state)]
        distinct = sorted(set(lr_values))
        self.lr_groups: list[tuple[float, list[int] | None]] = (
            [(distinct[0], None)]
            if len(distinct) == 1
            else [(v, [i for i, u in enumerate(lr_values) if u == v]) for v in distinct]
        )
        self.fused = USE_FUSED_OPTIMIZER and hasattr(
            torch, "_fused_adam_" if cfg.optimizer == "adam" else "_fused_sgd_"
        )

    def _lists(
        self, members: list[int] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]]]:
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        states: list[list[torch.Tensor]] = [[] for _ in range(2 if self.cfg.optimizer == "adam" else 1)]

        def select(t: torch.Tensor, member: int | None) -> torch.Tensor:
            return t if member is None else t[member]

        for name, p in self.params.items():
            assert p.grad is not None
            whole = members is None and (p[0].numel() % FUSED_ALIGN == 0 or p.shape[0] == 1)
            views: Sequence[int | None] = [None] if whole else (range(p.shape[0]) if members is None else members)
            for i in views:
                params.append(select(p.detach(), i))
                grads.append(select(p.grad, i))
                for j, s in enumerate(self.state[name]):
                    states[j].append(select(s, i))
        return params, grads, states

    @torch.no_grad()
    def step(self, factor: float) -> None:
        self.k += 1
        if self.fused:
            try:
                self._fused_step(factor)
                return
            except (RuntimeError, NotImplementedError):  # e.g. a device without fused kernels
                self.fused = False
        self._plain_step(factor)

    def _fused_step(self, factor: float) -> None:
        cfg = self.cfg
        for lr_value, members in self.lr_groups:
            params, grads, states = self._lists(members)
            if cfg.optimizer == "adam":
                step_t = torch.tensor(float(self.k), device=params[0].device)
                torch._fused_adam_(
                    params,
                    grads,
                    states[0],
                    states[1],
                    [],
                    [step_t] * len(params),
                    amsgrad=False,
                    lr=lr_value * factor,
                    beta1=cfg.betas[0],
                    beta2=cfg.betas[1],
                    weight_decay=cfg.weight_decay,
                    eps=cfg.eps,
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )
            else:
                torch._fused_sgd_(
                    params,
                    grads,
                    states[0] if cfg.momentum != 0 else [],
                    weight_decay=cfg.weight_decay,
                    momentum=cfg.momentum,
                    lr=lr_value * factor,
                    dampening=0.0,
                    nesterov=False,
                    maximize=False,
                    is_first_step=self.k == 1,
                    grad_scale=None,
                    found_inf=None,
                )

    def _plain_step(self, factor: float) -> None:
        cfg = self.cfg
        lr = self.base_lr * factor
        for name, p in self.params.items():
            g = p.grad
            assert g is not None
            if cfg.weight_decay != 0:
                g = g.add(p, alpha=cfg.weight_decay)
            lr_b = lr.view(-1, *([1] * (p.dim() - 1)))
            if cfg.optimizer == "adam":
                b1, b2 = cfg.betas
                exp_avg, exp_avg_sq = self.state[name]
                exp_avg.lerp_(g, 1 - b1)
                exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
                bc1 = 1 - b1**self.k
                bc2_sqrt = (1 - b2**self.k) ** 0.5
                denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(cfg.eps)
                p.sub_(exp_avg / denom * (lr_b / bc1))
            else:
                (buf,) = self.state[name]
                if cfg.momentum != 0:
                    if self.k == 1:
                        buf.copy_(g)
                    else:
                        buf.mul_(cfg.momentum).add_(g)
                    g = buf
                p.sub_(g * lr_b)

    @torch.no_grad()
    def freeze(self, dead: torch.Tensor) -> None:
        """Zero parameters, gradients and state of ``dead`` (M,) members."""
        for name, p in self.params.items():
            mask = dead.view(-1, *([1] * (p.dim() - 1)))
            p.masked_fill_(mask, 0.0)
            if p.grad is not None:
                p.grad.masked_fill_(mask, 0.0)
            for s in self.state[name]:
                s.masked_fill_(mask, 0.0)


def _default_max_members(cfg: TrainConfig, device: torch.device) -> int:
    if cfg.max_members_per_batch is not None:
        return cfg.max_members_per_batch
    if device.type != "cpu":
        return 256
    return 32 if cfg.model.kind == "cnn" else 128


#: Rows of one evaluation chunk. Fixed, not scaled by the number of members: a matrix product's
#: kernel (and so a member's last bits) can change with its row count, and a member's numbers
#: must not depend on how many companions it was batched with (`--members-per-task`, cache reuse).
EVAL_CHUNK_ROWS = {"cnn": 128, "mlp": 512}


def _eval_chunk(cfg: TrainConfig) -> int:
    return EVAL_CHUNK_ROWS[cfg.model.kind]


def _gather_images(cfg: TrainConfig, x_dev: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Images ``x_dev[index]`` as (M, b, C, H, W); for the CNN gathered batch-major (a view of a
    contiguous (b, M, ...) tensor), the layout its grouped convolution consumes without a copy."""
    m, b = index.shape
    if cfg.model.kind == "cnn":
        return torch.index_select(x_dev, 0, index.T.reshape(-1)).view(b, m, *x_dev.shape[1:]).transpose(0, 1)
    return torch.index_select(x_dev, 0, index.reshape(-1)).view(m, b, *x_dev.shape[1:])


@torch.no_grad()
def _predict(
    cfg: TrainConfig,
    params: dict[str, torch.Tensor],
    x_dev: torch.Tensor,
    index: torch.Tensor | None,
    n: int,
    out: torch.Tensor,
) -> None:
    """Softmax probabilities of every member on items ``index[:, i]`` (or shared ``x_dev[i]``).

    Writes into ``out`` (M, n, C) (any dtype / device).
    """
    n_members = out.shape[0]
    chunk = _eval_chunk(cfg)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        if index is not None:
            xb = _gather_images(cfg, x_dev, index[:, a:b])
        else:
            xb = x_dev[a:b].unsqueeze(0).expand(n_members, *x_dev[a:b].shape)
        with autocast_context(cfg, x_dev.device):
            logits = stacked_forward(cfg.model, params, xb)
        probs = torch.softmax(logits.float(), dim=-1)
        out[:, a:b] = probs.to(device=out.device, dtype=out.dtype)


@dataclass
class _Group:
    """What one batched group of members trains with: built by :func:`_setup_group`, advanced
    by :func:`_train_epoch` / :func:`_record_epoch`, read by :func:`_pack_results`.

    Tensors carry a leading member axis ``M``; ``n`` is the number of training items per member.
    """

    members: list[Member]
    cfg: TrainConfig
    device: torch.device
    n: int
    n_steps: int
    params: dict[str, torch.Tensor]
    lr: list[float]
    opt: _StackedOptimizer
    batch_loss: BatchLoss  # make_batch_loss(cfg, device)
    train_idx: torch.Tensor  # (M, n) rows of x
    targets: torch.Tensor  # (M, n, C) float32
    member_axis: torch.Tensor  # (M, 1)
    drop_widths: list[int]
    generators: list[torch.Generator]  # one dropout generator per member (empty without dropout)
    dynamics: torch.Tensor | None  # (M, epochs, n, C)
    watch_idx: torch.Tensor | None  # (M, n_watch)
    watch_dynamics: torch.Tensor | None  # (M, epochs, n_watch, C)
    loss_sum: torch.Tensor  # (epochs, M) float64: Σ over batches of batch loss · batch size
    alive: torch.Tensor  # (M,) bool: not diverged
    any_dead: bool = False
    diverged_at: dict[int, tuple[int, int]] = field(default_factory=dict)  # member -> (epoch, step)
    update: int = 0  # optimizer updates so far (the learning-rate schedule's k)
    epoch_labels: dict[int, torch.Tensor] = field(default_factory=dict)  # member -> (epochs, n) sampled classes

    @property
    def n_watch(self) -> int:
        return self.members[0].n_watch


def _setup_group(members: list[Member], cfg: TrainConfig, device: torch.device) -> _Group:
    """Stacked initial weights, the optimizer, the members' targets and item indices on the
    device, dropout generators and empty recording buffers."""
    if len({m.record_dynamics for m in members}) > 1:
        raise ValueError("members batched together must agree on record_dynamics (plan_batches groups them)")
    n_watch = members[0].n_watch
    if any(m.n_watch != n_watch for m in members):
        raise ValueError("members batched together must watch the same number of items (plan_batches groups them)")
    n_members = len(members)
    n = len(members[0].train_idx)
    n_classes = cfg.model.n_classes
    stacked = stack_params([init_params(cfg.model, m.seed) for m in members])
    params = {k: v.to(device).requires_grad_(True) for k, v in stacked.items()}
    lr = [float(m.lr) if m.lr is not None else float(cfg.lr) for m in members]
    drop_widths = dropout_layer_widths(cfg.model)
    generators = (
        [torch.Generator(device=device).manual_seed(_dropout_seed(m.seed)) for m in members] if drop_widths else []
    )
    for m in members:
        if m.epoch_labels is not None and len(m.epoch_labels) < cfg.epochs:
            raise ValueError(
                f"Member {m.name!r}: epoch_labels has {len(m.epoch_labels)} epochs, training runs {cfg.epochs}"
            )
    epoch_labels = {
        i: torch.from_numpy(m.epoch_labels[:, m.train_idx]).to(device)
        for i, m in enumerate(members)
        if m.epoch_labels is not None
    }
    dyn_dtype = torch.float16 if cfg.dynamics_dtype == "float16" else torch.float32
    record = cfg.record_dynamics and members[0].record_dynamics
    watch_idx = (
        torch.from_numpy(np.stack([m.watch_idx for m in members if m.watch_idx is not None])).to(device)
        if n_watch
        else None
    )
    return _Group(
        members=members,
        cfg=cfg,
        device=device,
        n=n,
        n_steps=steps_per_epoch(n, cfg.batch_size),
        params=params,
        lr=lr,
        opt=_StackedOptimizer(cfg, params, lr),
        batch_loss=make_batch_loss(cfg, device),
        train_idx=torch.from_numpy(np.stack([m.train_idx for m in members])).to(device),
        targets=torch.from_numpy(np.stack([m.targets[m.train_idx] for m in members]).astype(np.float32)).to(device),
        member_axis=torch.arange(n_members, device=device).unsqueeze(1),
        drop_widths=drop_widths,
        generators=generators,
        dynamics=torch.empty((n_members, cfg.epochs, n, n_classes), dtype=dyn_dtype) if record else None,
        watch_idx=watch_idx,
        watch_dynamics=(torch.empty((n_members, cfg.epochs, n_watch, n_classes), dtype=dyn_dtype) if n_watch else None),
        loss_sum=torch.zeros((cfg.epochs, n_members), dtype=torch.float64, device=device),
        alive=torch.ones(n_members, dtype=torch.bool, device=device),
        epoch_labels=epoch_labels,
    )


def _epoch_targets(g: _Group, epoch: int) -> torch.Tensor:
    """(M, n, C) targets of this epoch: each member's fixed targets, except that a member with
    ``epoch_labels`` trains on the one-hot of this epoch's sampled classes."""
    if not g.epoch_labels:
        return g.targets
    out = g.targets.clone()
    for i, labels in g.epoch_labels.items():
        out[i] = torch.nn.functional.one_hot(labels[epoch], out.shape[-1]).to(out.dtype)
    return out


def _dropout_masks(g: _Group, batch: int) -> list[torch.Tensor] | None:
    """Inverted-dropout masks (M, batch, width) of every dropout layer, from each member's generator."""
    if not g.drop_widths:
        return None
    keep = 1.0 - g.cfg.model.dropout
    return [
        torch.stack(
            [(torch.rand((batch, w), generator=gen, device=g.device) < keep).float() / keep for gen in g.generators]
        )
        for w in g.drop_widths
    ]


def _train_epoch(g: _Group, x_dev: torch.Tensor, epoch: int, bar: Any) -> None:
    """One pass over every member's training items in its seeded batch order: forward, loss,
    backward, divergence bookkeeping and one optimizer update per batch."""
    cfg = g.cfg
    total_updates = g.n_steps * cfg.epochs
    order = torch.from_numpy(np.stack([batch_order(m.seed, epoch, g.n) for m in g.members])).to(g.device)
    targets = _epoch_targets(g, epoch)
    for s in range(g.n_steps):
        pos = order[:, s * cfg.batch_size : (s + 1) * cfg.batch_size]  # (M, b)
        b = pos.shape[1]
        # forward: each member's own images and targets, its own dropout masks
        xb = _gather_images(cfg, x_dev, g.train_idx.gather(1, pos))
        tb = targets[g.member_axis, pos]  # (M, b, n_classes)
        loss_m = g.batch_loss(g.params, xb, tb, _dropout_masks(g, b))  # (M,)
        # backward: a non-finite member loss is left out of the summed objective
        finite = torch.isfinite(loss_m)
        all_finite = bool(finite.all())
        total = loss_m.sum() if all_finite else torch.where(finite, loss_m, torch.zeros_like(loss_m)).sum()
        for p in g.params.values():
            p.grad = None
        total.backward()
        g.loss_sum[epoch] += loss_m.detach().double() * b
        # divergence: freeze members whose loss just became non-finite (and keep them frozen)
        if not all_finite:
            for i in torch.nonzero(g.alive & ~finite).flatten().tolist():
                g.diverged_at[i] = (epoch, s)
            g.alive &= finite
            g.any_dead = True
        if g.any_dead:
            g.opt.freeze(~g.alive)
        # update
        g.opt.step(lr_factor(cfg, g.update, epoch, total_updates))
        g.update += 1
        if bar is not None:
            bar.update(1)


def _record_epoch(g: _Group, x_dev: torch.Tensor, epoch: int) -> None:
    """After an epoch: probabilities of the training items (dynamics) and of the watched items."""
    if g.dynamics is not None:
        _predict(g.cfg, g.params, x_dev, g.train_idx, g.n, g.dynamics[:, epoch])
    if g.watch_dynamics is not None:
        _predict(g.cfg, g.params, x_dev, g.watch_idx, g.n_watch, g.watch_dynamics[:, epoch])


def _predict_final(
    g: _Group, x_dev: torch.Tensor, eval_dev: dict[str, torch.Tensor]
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Final float32 probabilities on the watched items and on every evaluation set."""
    n_members, n_classes = len(g.members), g.cfg.model.n_classes
    watch_final = None
    if g.watch_idx is not None:
        watch_final = torch.empty((n_members, g.n_watch, n_classes), dtype=torch.float32)
        _predict(g.cfg, g.params, x_dev, g.watch_idx, g.n_watch, watch_final)
    eval_probs: dict[str, torch.Tensor] = {}
    for name, xe in eval_dev.items():
        out = torch.empty((n_members, len(xe), n_classes), dtype=torch.float32)
        _predict(g.cfg, g.params, xe, None, len(xe), out)
        eval_probs[name] = out
    return watch_final, eval_probs


def _divergence_message(member: Member, epoch: int, step: int) -> str:
    return (
        f"{member.describe()} diverged (non-finite loss) at epoch {epoch}, step {step}; "
        "its updates were frozen and its outputs from that epoch on are NaN"
    )


def _pack_results(
    g: _Group,
    watch_final: torch.Tensor | None,
    eval_probs: dict[str, torch.Tensor],
    seconds: float,
    keep_params: bool,
    stacklevel: int,
) -> list[MemberResult]:
    """One :class:`MemberResult` per member (numpy arrays); a diverged member's outputs are NaN
    from its epoch of divergence on, and a ``DivergenceWarning`` names it."""
    loss_np = (g.loss_sum / g.n).cpu().numpy().T  # (M, epochs)
    key = g.cfg.key_dict()
    results = []
    for i, m in enumerate(g.members):
        dyn = g.dynamics[i].numpy() if g.dynamics is not None else None
        probs = {k: v[i].numpy() for k, v in eval_probs.items()}
        w_dyn = g.watch_dynamics[i].numpy() if g.watch_dynamics is not None else None
        w_probs = watch_final[i].numpy() if watch_final is not None else None
        message, div_epoch = "", None
        if i in g.diverged_at:
            div_epoch, step = g.diverged_at[i]
            message = _divergence_message(m, div_epoch, step)
            warnings.warn(message, DivergenceWarning, stacklevel=stacklevel)
            if dyn is not None:
                dyn[div_epoch:] = np.nan
            if w_dyn is not None:
                w_dyn[div_epoch:] = np.nan
            if w_probs is not None:
                w_probs = np.full_like(w_probs, np.nan)
            loss_np[i, div_epoch:] = np.nan
            probs = {k: np.full_like(v, np.nan) for k, v in probs.items()}
        results.append(
            MemberResult(
                name=m.name,
                seed=m.seed,
                meta=dict(m.meta),
                config={**key, "lr": g.lr[i]},
                train_idx=m.train_idx.copy(),
                eval_probs=probs,
                dynamics=dyn,
                train_loss=loss_np[i].copy(),
                diverged=div_epoch is not None,
                diverged_epoch=div_epoch,
                message=message,
                seconds=seconds,
                batch_members=len(g.members),
                params=(
                    {k: v[i].detach().cpu().contiguous().numpy().copy() for k, v in g.params.items()}
                    if keep_params
                    else None
                ),
                watch_idx=None if m.watch_idx is None else m.watch_idx.copy(),
                watch_dynamics=w_dyn,
                watch_probs=w_probs,
            )
        )
    return results


def _train_group(
    x_dev: torch.Tensor,
    members: list[Member],
    cfg: TrainConfig,
    eval_dev: dict[str, torch.Tensor],
    device: torch.device,
    bar: Any,
    keep_params: bool = False,
) -> list[MemberResult]:
    """Train one batch of members (same subset size, watched count and recording) together."""
    start = time.perf_counter()
    # setup: stacked initial weights, optimizer, targets and recording buffers on the device
    g = _setup_group(members, cfg, device)
    # epoch loop: the seeded batches of every member, then what the epoch records
    for epoch in range(cfg.epochs):
        _train_epoch(g, x_dev, epoch, bar)
        _record_epoch(g, x_dev, epoch)
    # final predictions: the watched items and every evaluation set
    watch_final, eval_probs = _predict_final(g, x_dev, eval_dev)
    seconds = time.perf_counter() - start
    # result packing: one MemberResult per member (warnings point at train_members' caller)
    return _pack_results(g, watch_final, eval_probs, seconds, keep_params, stacklevel=4)


def plan_batches(members: Sequence[Member], max_members: int, parts: int = 1) -> list[list[int]]:
    """Member indices grouped by (training-subset size, number of watched items, whether
    dynamics are recorded), then cut into batches of ≤ max_members (in first-appearance order).

    ``parts`` > 1 (``TrainConfig.cpu_workers``): each such set is cut into a multiple of ``parts``
    consecutive batches of near-equal size (still ≤ max_members), so that ``parts`` workers get
    equal work; ``parts == 1`` keeps full batches and one short last batch.
    """
    by_size: dict[tuple[int, int, bool], list[int]] = {}
    for i, m in enumerate(members):
        by_size.setdefault((len(m.train_idx), m.n_watch, bool(m.record_dynamics)), []).append(i)
    batches = []
    for idx in by_size.values():
        if parts == 1:
            for a in range(0, len(idx), max_members):
                batches.append(idx[a : a + max_members])
            continue
        n_batches = parts * math.ceil(len(idx) / (max_members * parts))
        batches += [list(map(int, chunk)) for chunk in np.array_split(np.array(idx), n_batches) if len(chunk)]
    return batches


class _LockedBar:
    """A progress bar that worker threads may advance at once (``tqdm.update`` is not atomic)."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._lock = threading.Lock()

    def update(self, n: int = 1) -> None:
        with self._lock:
            self._bar.update(n)


def train_members(
    x: np.ndarray,
    members: Sequence[Member],
    cfg: TrainConfig,
    eval_sets: Mapping[str, np.ndarray] | None = None,
    progress: bool = True,
    keep_params: bool = False,
) -> list[MemberResult]:
    """Train every member (batched) and return one ``MemberResult`` per member, in order
    (with its trained weights in ``.params`` when ``keep_params``).

    x: (N, C, H, W) float32 images indexed by each member's ``train_idx`` / ``targets`` rows.
    eval_sets: name → (n, C, H, W) float32 images to predict after training.
    """
    eval_sets = dict(eval_sets or {})
    members = list(members)
    x = _check_inputs(x, members, cfg, eval_sets)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    x_dev = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    eval_dev = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in eval_sets.items()}
    workers = (cfg.cpu_workers or env_cpu_workers()) if device.type == "cpu" else 1
    batches = plan_batches(members, _default_max_members(cfg, device), parts=workers)
    workers = min(workers, len(batches))
    total_steps = sum(steps_per_epoch(len(members[b[0]].train_idx), cfg.batch_size) * cfg.epochs for b in batches)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc=f"train {len(members)} members", unit="step", leave=False)
    results: list[MemberResult | None] = [None] * len(members)

    def train(batch: list[int], group_bar: Any) -> list[MemberResult]:
        return _train_group(x_dev, [members[i] for i in batch], cfg, eval_dev, device, group_bar, keep_params)

    try:
        if workers == 1:
            groups: Iterable[list[MemberResult]] = (train(batch, bar) for batch in batches)
        else:
            groups = _train_in_threads(train, batches, workers, bar)
        for batch, group in zip(batches, groups):
            for i, r in zip(batch, group):
                results[i] = r
    finally:
        if bar is not None:
            bar.close()
    return [r for r in results if r is not None]


def _train_in_threads(
    train: Callable[[list[int], Any], list[MemberResult]], batches: list[list[int]], workers: int, bar: Any
) -> list[list[MemberResult]]:
    """``train(batch, bar)`` for every batch, ``workers`` at a time in threads (PyTorch's kernels
    release the GIL), each thread with ``1/workers`` of the intra-op threads; results in order.

    The intra-op thread count is process-wide: it is lowered for the call and restored after.
    """
    shared_bar = _LockedBar(bar) if bar is not None else None
    with (
        torch_threads(max(1, torch.get_num_threads() // workers)),
        concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="softlab-train") as pool,
    ):
        futures = [pool.submit(train, batch, shared_bar) for batch in batches]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()  # the groups not yet started; the running ones finish before the pool closes
            raise


# ----------------------------------------------------------------------------- plain reference


def train_single_reference(
    x: np.ndarray, member: Member, cfg: TrainConfig, eval_sets: Mapping[str, np.ndarray] | None = None
) -> MemberResult:
    """The plain loop: one ``nn.Module`` + ``torch.optim.Adam``/``SGD``, same init and batches.

    Honours ``cfg.precision`` (bf16 autocast of the forward pass); ignores ``cfg.compile_mode``
    (it is the eager baseline).

    Loss via ``F.cross_entropy`` with probability targets. With dropout > 0 the masks come from
    the global RNG seeded with ``member.seed`` (inside ``torch.random.fork_rng``), so they
    differ from ``train_members``'; without dropout both compute the same function.
    """
    eval_sets = dict(eval_sets or {})
    x = _check_inputs(x, [member], cfg, eval_sets)
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    lr = member.lr if member.lr is not None else cfg.lr
    n = len(member.train_idx)
    n_classes = cfg.model.n_classes
    n_steps = steps_per_epoch(n, cfg.batch_size)
    total_updates = n_steps * cfg.epochs
    x_t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    t_t = torch.from_numpy(np.ascontiguousarray(member.targets, dtype=np.float32)).to(device)
    idx_t = torch.from_numpy(member.train_idx).to(device)
    model = init_model(cfg.model, member.seed).to(device)
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    dyn_dtype = np.float16 if cfg.dynamics_dtype == "float16" else np.float32
    dynamics = np.empty((cfg.epochs, n, n_classes), dtype=dyn_dtype) if cfg.record_dynamics else None
    train_loss = np.zeros(cfg.epochs)
    diverged_at: tuple[int, int] | None = None

    def forward(xs: torch.Tensor) -> torch.Tensor:
        with autocast_context(cfg, device):
            logits = model(xs)
        return logits.float()

    def predict(xs: torch.Tensor) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = [torch.softmax(forward(xs[a : a + 1024]), -1).cpu() for a in range(0, len(xs), 1024)]
        return torch.cat(out).numpy()

    update = 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(member.seed)
        for epoch in range(cfg.epochs):
            order = batch_order(member.seed, epoch, n)
            for s in range(n_steps):
                gi = idx_t[torch.from_numpy(order[s * cfg.batch_size : (s + 1) * cfg.batch_size]).to(device)]
                if diverged_at is None:
                    model.train()
                    loss = F.cross_entropy(forward(x_t[gi]), t_t[gi])
                    loss_value = loss.item()
                    train_loss[epoch] += loss_value * len(gi)
                    if not math.isfinite(loss_value):
                        diverged_at = (epoch, s)
                    else:
                        for group in opt.param_groups:
                            group["lr"] = lr * lr_factor(cfg, update, epoch, total_updates)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                update += 1
            if dynamics is not None:
                dynamics[epoch] = predict(x_t[idx_t])
    train_loss /= n
    probs = {
        k: predict(torch.from_numpy(np.ascontiguousarray(v)).to(device)).astype(np.float32)
        for k, v in eval_sets.items()
    }
    message = ""
    if diverged_at is not None:
        message = _divergence_message(member, *diverged_at)
        warnings.warn(message, DivergenceWarning, stacklevel=2)
        if dynamics is not None:
            dynamics[diverged_at[0] :] = np.nan
        train_loss[diverged_at[0] :] = np.nan
        probs = {k: np.full_like(v, np.nan) for k, v in probs.items()}
    return MemberResult(
        name=member.name,
        seed=member.seed,
        meta=dict(member.meta),
        config={**cfg.key_dict(), "lr": float(lr)},
        train_idx=member.train_idx.copy(),
        eval_probs=probs,
        dynamics=dynamics,
        train_loss=train_loss,
        diverged=diverged_at is not None,
        diverged_epoch=None if diverged_at is None else diverged_at[0],
        message=message,
        seconds=time.perf_counter() - start,
        batch_members=1,
    )
