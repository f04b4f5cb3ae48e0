"""Post-hoc temperature scaling (Guo et al. 2017): the ``+ts`` and ``+ts-official`` baselines.

A trained model's probabilities ``p`` are rescaled as ``softmax(log p / T)`` (equal to
``softmax(z / T)`` of its logits ``z``, since ``log p = z − logsumexp(z)``). ``T`` is fitted on a
calibration split the model never trained on and that is never evaluated
(:mod:`softlab.experiment`), by minimising the mean cross-entropy against each calibration
item's reference distribution ``r`` — for ``+ts`` its human distribution where it has one, else
its one-hot official label; for ``+ts-official`` (:func:`fit_official_temperature`) always the
one-hot official label, what a practitioner without human labels can fit::

    T* = argmin_T  −(1/n) Σ_i Σ_c r_ic · log softmax(log p_i / T)_c

``T > 1`` softens an over-confident model, ``T < 1`` sharpens an under-confident one. The loss
is convex in ``1/T`` (a log-sum-exp of linear functions of ``1/T`` minus a linear term), so the
bounded one-dimensional search of :func:`scipy.optimize.minimize_scalar` over
``log T ∈ [log T_min, log T_max]`` finds the global minimum.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from softlab.labels import TEACHER_FLOOR, temper

__all__ = [
    "T_BOUNDS",
    "apply_temperature",
    "fit_official_temperature",
    "fit_temperature_scaling",
    "scaled_cross_entropy",
]

#: The temperatures searched (a model needing more than this is reported at the bound).
T_BOUNDS: tuple[float, float] = (0.05, 20.0)


def scaled_cross_entropy(probs: np.ndarray, reference: np.ndarray, temperature: float) -> float:
    """Mean cross-entropy (nats) of ``reference`` rows against ``softmax(log probs / T)``."""
    z = np.log(np.maximum(np.asarray(probs, dtype=np.float64), TEACHER_FLOOR)) / temperature
    return float(-(np.asarray(reference, dtype=np.float64) * log_softmax(z, axis=-1)).sum(axis=-1).mean())


def fit_temperature_scaling(probs: np.ndarray, reference: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature ``T*`` (see the module docstring) for ``probs`` (n, C) against
    ``reference`` (n, C) probability rows. Returns 1.0 for an empty calibration set or a
    model whose probabilities are all NaN (a diverged run)."""
    p = np.asarray(probs, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 2:
        raise ValueError(f"probs and reference: expected equal shapes (n, C), got {p.shape} and {r.shape}")
    if len(p) == 0 or not np.isfinite(p).all():
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(
        lambda log_t: scaled_cross_entropy(p, r, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x))


def fit_official_temperature(probs: np.ndarray, official: np.ndarray, bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature ``T*`` for ``probs`` (n, C) against the one-hot ``official`` labels (n,
    integers in ``[0, C)``): it takes no distribution, so no human label can reach it."""
    p = np.asarray(probs)
    y = np.asarray(official)
    if p.ndim != 2 or y.shape != (len(p),):
        raise ValueError(f"probs and official: expected shapes (n, C) and (n,), got {p.shape} and {y.shape}")
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(
            f"official: expected integer labels in [0, {p.shape[1]}), got {y.dtype} values in [{y.min()}, {y.max()}]"
        )
    return fit_temperature_scaling(p, np.eye(p.shape[1])[y], bounds)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` per row, float32 (NaN rows stay NaN)."""
    p = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(p).all():
        return np.asarray(p, dtype=np.float32)
    return temper(p, temperature).astype(np.float32)
