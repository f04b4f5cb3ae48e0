"""Pure estimators on arrays: crossed seeds × items variance, paired differences, best-of comparators,
Pitman–Morgan variance ratios, exact sign-flip tests, Holm, minimum detectable effects.

Definitions are in the docstring of :mod:`softlab.inference`. Nothing here knows about claims,
arms or metrics: every function takes numbers and returns numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = [
    "DIRECTIONS",
    "Composite",
    "DifferenceResult",
    "PitmanMorgan",
    "best_of",
    "crossed_variance",
    "difference_mde",
    "holm",
    "paired_difference",
    "pitman_morgan",
    "pseudo_values",
    "seeds_for_power",
    "sign_flip_interval",
    "sign_flip_test",
    "swap_permutation_variance_test",
    "variance_ratio_mde",
]

DIRECTIONS: tuple[str, ...] = ("lower", "higher")
"""The side a claim predicts: ``lower`` (condition below comparator) or ``higher``."""

# ----------------------------------------------------------------------------------------------
# Variance of a crossed seeds × items design
# ----------------------------------------------------------------------------------------------


def crossed_variance(pseudo: np.ndarray) -> tuple[float, float]:
    """Variance and Satterthwaite degrees of freedom of the grand mean of an ``S × G`` table.

    Two-way crossed random effects without replication (rows: seeds, columns: item groups):
    ``Var = (MS_row + MS_col − MS_res) / (S·G)`` with the usual ANOVA mean squares, whose
    expectation is ``σ²_row/S + σ²_col/G + σ²_res/(S·G)``. Degrees of freedom:
    ``Var² / Σ_j (c_j MS_j)² / ν_j`` (Satterthwaite 1946). If ``Var`` is below
    ``max(MS_row, MS_col)/(S·G)`` (each an unbiased estimate of a lower bound of the true variance),
    that bound and its degrees of freedom are used — which is the usual truncation of a negative
    variance-component estimate (``MS_col < MS_res``: no detectable item component) at zero, and
    makes the estimate slightly conservative. A single column (no item groups) gives ``s²_rows / S`` on
    ``S − 1`` df. Fewer than 2 rows: ``(nan, nan)``.
    """
    p = np.asarray(pseudo, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"pseudo: expected a (seeds, groups) table, got shape {p.shape}")
    s, g = p.shape
    if s < 2 or not np.all(np.isfinite(p)):
        return math.nan, math.nan
    if g == 1:
        return float(p[:, 0].var(ddof=1) / s), float(s - 1)
    grand = p.mean()
    row = p.mean(axis=1)
    col = p.mean(axis=0)
    ms_row = g * ((row - grand) ** 2).sum() / (s - 1)
    ms_col = s * ((col - grand) ** 2).sum() / (g - 1)
    resid = p - row[:, None] - col[None, :] + grand
    df_res = (s - 1) * (g - 1)
    ms_res = (resid**2).sum() / df_res
    n = s * g
    var = (ms_row + ms_col - ms_res) / n
    terms = [(ms_row / n, s - 1), (ms_col / n, g - 1), (ms_res / n, df_res)]
    floor, floor_df = max((ms_row / n, s - 1), (ms_col / n, g - 1))
    if not var > floor:
        return float(floor), float(floor_df)
    den = sum(c**2 / d for c, d in terms)
    return float(var), float(var**2 / den) if den > 0 else float(s - 1)


def pseudo_values(values: np.ndarray) -> np.ndarray:
    """Delete-a-group jackknife pseudo-values ``G·v_full − (G − 1)·v_without_g``: ``(S, G)``
    (``(S, 1)`` = the full values when there are no groups)."""
    v = np.asarray(values, dtype=np.float64)
    g = v.shape[1] - 1
    if g == 0:
        return v[:, :1]
    return g * v[:, :1] - (g - 1) * v[:, 1:]


# ----------------------------------------------------------------------------------------------
# Paired differences
# ----------------------------------------------------------------------------------------------


def _t_quantile(p: float, df: float) -> float:
    return float(sps.t.ppf(p, df)) if df > 0 and math.isfinite(df) else math.nan


@dataclass(frozen=True)
class DifferenceResult:
    """A paired difference ``D`` (condition − comparator) with its relative effect ``R``.

    ``se``/``df`` and ``relative_se``/``relative_df`` define t intervals
    (see :func:`paired_difference`).
    """

    estimate: float
    se: float
    df: float
    relative: float
    relative_se: float
    relative_df: float
    mean_condition: float
    mean_comparator: float
    n_seeds: int

    def interval(self, confidence: float, relative: bool = False) -> tuple[float, float]:
        """Two-sided t interval at ``confidence``."""
        est, se, df = (
            (self.relative, self.relative_se, self.relative_df) if relative else (self.estimate, self.se, self.df)
        )
        q = _t_quantile(0.5 + confidence / 2.0, df)
        return est - q * se, est + q * se

    def one_sided_bound(self, tail: float, upper: bool, relative: bool = False) -> float:
        """Lower (``upper=False``) or upper confidence bound with one-sided error ``tail``."""
        est, se, df = (
            (self.relative, self.relative_se, self.relative_df) if relative else (self.estimate, self.se, self.df)
        )
        q = _t_quantile(1.0 - tail, df)
        return est + q * se if upper else est - q * se

    def p_below(self) -> float:
        """One-sided p-value for ``δ < 0`` (null ``δ ≥ 0``): ``F_t(D/se)``."""
        return float(sps.t.cdf(self.estimate / self.se, self.df)) if self.se > 0 else math.nan

    def p_above(self) -> float:
        """One-sided p-value for ``δ > 0`` (null ``δ ≤ 0``)."""
        return float(sps.t.sf(self.estimate / self.se, self.df)) if self.se > 0 else math.nan

    def p_value(self) -> float:
        """Two-sided p-value ``2·P(T_ν > |D|/se)``."""
        return min(1.0, 2.0 * min(self.p_below(), self.p_above())) if self.se > 0 else math.nan


def paired_difference(condition_values: np.ndarray, comparator_values: np.ndarray) -> DifferenceResult:
    """Seed-level paired difference with seed and item-sampling variance.

    Inputs are ``(S, G + 1)`` tables from :func:`leave_group_out_values` (column 0: all items;
    column ``g + 1``: group ``g`` left out; ``G = 0`` allowed: seed variance only). Estimate
    ``D = mean_s (c_s − b_s)`` on all items; variance from :func:`crossed_variance` of the
    pseudo-values of ``c − b``; relative effect ``R = D / |B̄|`` (``B̄`` the comparator's mean)
    with the delta-method pseudo-values ``(P^{c−b} − R·sign(B̄)·P^b) / |B̄|``.
    """
    c = np.asarray(condition_values, dtype=np.float64)
    b = np.asarray(comparator_values, dtype=np.float64)
    if c.shape != b.shape or c.ndim != 2:
        raise ValueError(
            f"condition_values/comparator_values: expected equal (S, G+1) shapes, got {c.shape} and {b.shape}"
        )
    n_seeds = c.shape[0]
    d = c[:, 0] - b[:, 0]
    est = float(d.mean())
    mean_c = float(c[:, 0].mean())
    mean_b = float(b[:, 0].mean())
    pd_ = pseudo_values(c) - pseudo_values(b)
    var, df = crossed_variance(pd_)
    if mean_b != 0 and math.isfinite(mean_b):
        rel = est / abs(mean_b)
        pr = (pd_ - rel * np.sign(mean_b) * pseudo_values(b)) / abs(mean_b)
        rvar, rdf = crossed_variance(pr)
    else:
        rel, rvar, rdf = math.nan, math.nan, math.nan
    return DifferenceResult(
        estimate=est,
        se=math.sqrt(var) if var >= 0 else math.nan,
        df=df,
        relative=rel,
        relative_se=math.sqrt(rvar) if rvar >= 0 else math.nan,
        relative_df=rdf,
        mean_condition=mean_c,
        mean_comparator=mean_b,
        n_seeds=n_seeds,
    )


@dataclass(frozen=True)
class Composite:
    """A test of a condition against the best of ``K`` comparators (see the module docstring)."""

    selected: int
    estimate: float
    relative: float
    results: tuple[DifferenceResult, ...]
    direction: str

    @property
    def k(self) -> int:
        return len(self.results)

    def interval(self, confidence: float, relative: bool = False) -> tuple[float, float]:
        """``[max_k L_k(α/(2K)), max_k U_k(α/2)]`` for ``lower`` (mirror image for ``higher``),
        ``α = 1 − confidence``."""
        a = 1.0 - confidence
        strict = a / (2.0 * self.k)
        loose = a / 2.0
        if self.direction == "lower":
            lo = max(r.one_sided_bound(strict, upper=False, relative=relative) for r in self.results)
            hi = max(r.one_sided_bound(loose, upper=True, relative=relative) for r in self.results)
        else:
            lo = min(r.one_sided_bound(loose, upper=False, relative=relative) for r in self.results)
            hi = min(r.one_sided_bound(strict, upper=True, relative=relative) for r in self.results)
        return lo, hi

    def p_value(self) -> float:
        """Two-sided p-value of the composite interval: ``min(1, 2·min(max_k p_pred, K·min_k p_other))``."""
        if self.direction == "lower":
            pred = [r.p_below() for r in self.results]
            other = [r.p_above() for r in self.results]
        else:
            pred = [r.p_above() for r in self.results]
            other = [r.p_below() for r in self.results]
        if any(not math.isfinite(x) for x in pred + other):
            return math.nan
        return min(1.0, 2.0 * min(max(pred), self.k * min(other)))


def best_of(results: Sequence[DifferenceResult], direction: str) -> Composite:
    """Combine the differences against ``K`` comparators into the test against the best one: the
    comparator with the lowest mean for ``direction="lower"`` (highest for ``"higher"``)."""
    if not results:
        raise ValueError("results: expected at least one comparator")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    means = [r.mean_comparator for r in results]
    sel = int(np.argmin(means)) if direction == "lower" else int(np.argmax(means))
    return Composite(sel, results[sel].estimate, results[sel].relative, tuple(results), direction)


def difference_mde(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference of a two-sided t test: ``(t_{1−α/2,ν} + t_{power,ν})·se``."""
    if not (se > 0 and df > 0):
        return math.nan
    return (_t_quantile(1.0 - alpha / 2.0, df) + _t_quantile(power, df)) * se


# ----------------------------------------------------------------------------------------------
# Paired variances (claim 2)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PitmanMorgan:
    """Pitman–Morgan test of ``Var(X) = Var(Y)`` for paired samples, with the exact ratio interval."""

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    t: float
    r: float
    n: int

    @property
    def df(self) -> int:
        return self.n - 2


def pitman_morgan(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], confidence: float = 0.95
) -> PitmanMorgan:
    """Pitman (1939) – Morgan (1939) test of equal variances of paired ``x``, ``y``.

    ``F = s²_x / s²_y``; ``r_UV = corr(x + y, x − y)``; ``t = r_UV·sqrt((n − 2)/(1 − r²_UV))`` on
    ``n − 2`` df (two-sided p). Interval for ``σ²_x/σ²_y``: ``F·(K ± sqrt(K² − 1))``,
    ``K = 1 + 2(1 − r²)·t²_{n−2, (1+confidence)/2}/(n − 2)``, ``r = corr(x, y)`` — the set of
    ratios the test does not reject, exact under bivariate normality.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"x, y: expected equal 1-D shapes, got {a.shape} and {b.shape}")
    n = a.size
    nan = PitmanMorgan(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, n)
    if n < 3:
        return nan
    vx, vy = float(a.var(ddof=1)), float(b.var(ddof=1))
    if vy <= 0 or vx <= 0:
        return nan
    ratio = vx / vy
    r = float(np.corrcoef(a, b)[0, 1])
    u, v = a + b, a - b
    if u.var() <= 0 or v.var() <= 0:
        return nan
    r_uv = float(np.clip(np.corrcoef(u, v)[0, 1], -1.0, 1.0))
    df = n - 2
    if abs(r_uv) >= 1.0:
        t, p = math.copysign(math.inf, r_uv), 0.0
    else:
        t = r_uv * math.sqrt(df / (1.0 - r_uv**2))
        p = float(2.0 * sps.t.sf(abs(t), df))
    q = _t_quantile(0.5 + confidence / 2.0, df)
    k = 1.0 + 2.0 * (1.0 - r**2) * q**2 / df
    root = math.sqrt(max(k**2 - 1.0, 0.0))
    return PitmanMorgan(ratio, ratio * (k - root), ratio * (k + root), p, t, r, n)


def _rho_uv(ratio: float, rho: float) -> float:
    """Population ``corr(X + Y, X − Y)`` for ``Var X / Var Y = ratio`` and ``corr(X, Y) = rho``."""
    return (ratio - 1.0) / math.sqrt((ratio + 1.0) ** 2 - 4.0 * ratio * rho**2)


def variance_ratio_mde(n: int, rho: float, alpha: float = 0.05, power: float = 0.8, direction: str = "lower") -> float:
    """Smallest variance ratio ``λ < 1`` (``direction="lower"``; ``1/λ`` for ``"higher"``) that the
    Pitman–Morgan test detects with ``power`` at two-sided level ``alpha`` with ``n`` seeds.

    Fisher's z for the test correlation: power ``≈ Φ(|atanh ρ_UV|·sqrt(n − 3) − z_{1−α/2})`` with
    ``ρ_UV = (λ − 1)/sqrt((λ + 1)² − 4λρ²)``; solving ``|ρ_UV| = tanh((z_{1−α/2} + z_power)/sqrt(n − 3))``
    gives ``λ = κ − sqrt(κ² − 1)``, ``κ = (1 + a − 2aρ²)/(1 − a)``, ``a = ρ_UV²``.
    """
    if n <= 3 or not -1.0 < rho < 1.0:
        return math.nan
    z = sps.norm.ppf(1.0 - alpha / 2.0) + sps.norm.ppf(power)
    a = math.tanh(z / math.sqrt(n - 3)) ** 2
    kappa = (1.0 + a - 2.0 * a * rho**2) / (1.0 - a)
    lam = kappa - math.sqrt(max(kappa**2 - 1.0, 0.0))
    return lam if direction == "lower" else 1.0 / lam


def seeds_for_power(ratio: float = 0.85, rho: float = 0.5, alpha: float = 0.05, power: float = 0.8) -> int:
    """Seeds needed for the Pitman–Morgan test to detect a variance ratio ``ratio`` with ``power`` at
    two-sided level ``alpha`` when the per-seed metrics of the two conditions correlate ``rho``:
    ``n = ⌈((z_{1−α/2} + z_power) / |atanh ρ_UV|)² + 3⌉`` (Fisher's z; :func:`variance_ratio_mde`)."""
    if not ratio > 0 or ratio == 1.0:
        raise ValueError(f"ratio: expected a positive variance ratio other than 1, got {ratio!r}")
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho: expected a correlation in (-1, 1), got {rho!r}")
    z = sps.norm.ppf(1.0 - alpha / 2.0) + sps.norm.ppf(power)
    return math.ceil((z / abs(math.atanh(_rho_uv(ratio, rho)))) ** 2 + 3.0)


# ----------------------------------------------------------------------------------------------
# Exact tests (descriptive arms)
# ----------------------------------------------------------------------------------------------

_MAX_EXACT_SEEDS = 16
_N_RANDOM_FLIPS = 2**16


def _sign_patterns(n: int, seed: int) -> np.ndarray:
    if n <= _MAX_EXACT_SEEDS:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(_N_RANDOM_FLIPS, n))
    signs[0] = 1.0  # the observed pattern is always part of the reference set
    return signs


def sign_flip_test(d: np.ndarray | Sequence[float], seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(d) = 0`` (``d`` symmetric about 0 under the
    null): the share of sign patterns with ``|mean(±d)| ≥ |mean(d)|`` — all ``2^n`` patterns for up to
    16 values (exact), else ``2^16`` seeded random patterns including the identity."""
    x = np.asarray(d, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        return math.nan
    signs = _sign_patterns(x.size, seed)
    stat = np.abs(signs @ x) / x.size
    obs = abs(x.mean())
    return float(np.mean(stat >= obs - 1e-12 * max(1.0, obs)))


def sign_flip_interval(d: np.ndarray | Sequence[float], confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Interval by inverting :func:`sign_flip_test`: the shifts ``δ`` with ``p(d − δ) > 1 − confidence``
    (found by bisection on each side of the mean). Infinite when even the most extreme pattern is
    not rare enough (e.g. ``2/2^n ≥ 1 − confidence``)."""
    x = np.asarray(d, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        return math.nan, math.nan
    alpha = 1.0 - confidence
    signs = _sign_patterns(x.size, seed)
    center = float(x.mean())
    spread = float(x.max() - x.min()) + abs(center) + 1e-12

    def accepted(delta: float) -> bool:
        y = x - delta
        stat = np.abs(signs @ y) / y.size
        obs = abs(y.mean())
        return float(np.mean(stat >= obs - 1e-12 * max(1.0, obs))) > alpha

    def edge(outward: float) -> float:
        far = center + outward * spread
        if accepted(far):
            return math.copysign(math.inf, outward)
        inside, outside = center, far
        for _ in range(60):
            mid = 0.5 * (inside + outside)
            if accepted(mid):
                inside = mid
            else:
                outside = mid
        return inside

    return edge(-1.0), edge(1.0)


def swap_permutation_variance_test(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], seed: int = 0
) -> float:
    """Two-sided permutation p-value for paired variances: swap ``x_s`` and ``y_s`` within seeds
    (exact over all ``2^n`` swap patterns up to 16 seeds) and compare ``|ln(s²_x/s²_y)|``. Exact
    under exchangeability of the two conditions within a seed."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 3:
        return math.nan
    swap = _sign_patterns(a.size, seed) < 0  # True: swap this seed
    xa = np.where(swap, b, a)
    ya = np.where(swap, a, b)
    vx, vy = xa.var(axis=1, ddof=1), ya.var(axis=1, ddof=1)
    if a.var(ddof=1) <= 0 or b.var(ddof=1) <= 0:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.abs(np.log(vx / vy))
    obs = abs(math.log(a.var(ddof=1) / b.var(ddof=1)))
    return float(np.mean(stat >= obs - 1e-12 * max(1.0, obs)))


# ----------------------------------------------------------------------------------------------
# Multiplicity and verdicts
# ----------------------------------------------------------------------------------------------


def holm(p_values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: with ``p_(1) ≤ … ≤ p_(m)``,
    ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``. NaN entries count in ``m`` (a test that was
    run but gave no p-value), are ordered last and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values: expected a 1-D array, got shape {p.shape}")
    m = p.size
    out = np.full(m, np.nan)
    if m == 0:
        return out
    filled = np.where(np.isnan(p), np.inf, p)
    order = np.argsort(filled, kind="stable")
    running = 0.0
    for rank, idx in enumerate(order):
        if not np.isfinite(filled[idx]):
            break
        running = max(running, min(1.0, (m - rank) * p[idx]))
        out[idx] = running
    return out
