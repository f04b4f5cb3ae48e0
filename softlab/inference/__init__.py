"""From out-of-fold predictions to verdicts: pre-registered tests, honest intervals, Holm, TOST, power.

One job per module (layers top to bottom; a module imports only those below it):

* :mod:`~softlab.inference.verdicts` — the verdict table: families, Holm, versions;
* :mod:`~softlab.inference.kinds` — one evaluator per test kind and the five-outcome decision rule;
* :mod:`~softlab.inference.claims` — ``params/claims.yml`` read: tests per arm and version, errors in words;
* :mod:`~softlab.inference.schema` — the file's strict pydantic models;
* :mod:`~softlab.inference.values` — per-seed metric values of an arm with their jackknife, cached;
* :mod:`~softlab.inference.registry` — the metrics a test may name, with their item jackknife;
* :mod:`~softlab.inference.estimators` — pure estimators on arrays;
* :mod:`~softlab.inference.predictions` — :class:`ArmPredictions`, the unit every test works on.

The unit of analysis is an :class:`ArmPredictions`: for each seed, the pooled out-of-fold final
probabilities of every evaluated item under every condition (folds are pooled inside a seed, so
each item has exactly one prediction per seed). Seeds are the independent replications; the items
are a sample from a population of items. The tests to run are fixed in ``params/claims.yml``
(:func:`load_claims`); :func:`verdict_table` turns a book's arms into one table.

Definitions
-----------
**Paired difference** (``kind: difference``). For condition ``c``, comparator ``b``, metric ``m``
on the stratum's items ``I``: ``d_s = m(c, s, I) − m(b, s, I)``, estimate ``D = mean_s d_s``.
Its variance carries both sources of randomness of a crossed seeds × items design:
the items are split into ``G`` random groups (seeded), ``m`` is recomputed with each group left
out (delete-a-group jackknife), and the jackknife pseudo-values
``P_sg = G·d_s − (G − 1)·d_s^(−g)`` (for a mean over items: the mean of group ``g``) form an
``S × G`` table analysed as a two-way crossed random-effects layout::

    Var(D) = (MS_seed + MS_group − MS_residual) / (S·G)

(``MS`` the ANOVA mean squares with ``S − 1``, ``G − 1`` and ``(S − 1)(G − 1)`` degrees of
freedom; the expectation is ``σ²_seed/S + σ²_item/G + σ²_seed×item/(S·G)``: seed variance plus
item-sampling variance, the interaction counted once). A negative component estimate is truncated at
zero (the larger of ``MS_seed/(S·G)`` and ``MS_group/(S·G)`` is used). The interval is
``D ± t_ν · sqrt(Var)`` with Satterthwaite degrees of freedom ``ν``; two-sided and one-sided
p-values come from the same ``t``. The **relative effect** ``R = D / |mean_s m(b, s, I)|`` gets
the same treatment applied to its delta-method pseudo-values ``(P^d − R·sign(B̄)·P^b)/|B̄|``.

**Best of several comparators** (claim 1: ``best_of``). The pre-registered comparator is the best
baseline, the one with the best mean in the predicted direction (lowest for ``lower``). Selecting
it from the data makes a naive test anti-conservative against the refuting side, so the
interval for ``δ* = μ_c − μ_best`` (``= max_k δ_k`` for ``lower``) is
``[max_k L_k(α/(2K)), max_k U_k(α/2)]`` from the ``K`` individual intervals (one-sided levels in
brackets): beating the best baseline means beating every baseline (an intersection–union test,
no adjustment needed), while losing to it needs one Bonferroni-adjusted loss. This interval covers
``δ*`` with probability ≥ 1 − α; its p-value is ``min(1, 2·min(max_k p_k^pred, K·min_k p_k^other))``.

**Variance ratio** (``kind: variance_ratio``, claim 2): ``F = s²_c / s²_b`` of the per-seed metric
(all items), tested with Pitman–Morgan: ``t = r_UV·sqrt((n − 2)/(1 − r_UV²))`` on ``n − 2``
degrees of freedom, ``r_UV`` the correlation of ``U = X + Y`` and ``V = X − Y``; exact interval
``F·[K − sqrt(K² − 1), K + sqrt(K² − 1)]`` with ``K = 1 + 2(1 − r²)t²_{n−2}/(n − 2)`` and ``r`` the
correlation of ``X`` and ``Y`` (exact under bivariate normality). The item sample is held fixed:
the estimand is the seed variance on these items.

**Descriptive arms** (MNIST: 100 pre-selected items, not a sample): an exact sign-flip
permutation test over seeds of ``d_s`` (all ``2^S`` sign patterns up to 16 seeds, else
``2^16`` seeded draws) with the interval obtained by inverting it, and for variance ratios an
exact within-seed swap permutation test of ``|log F|``; verdict ``descriptive``.

**Bound** (``kind: bound``, claim 3's second half): one condition's own per-seed value ``θ``
against a pre-registered bound, predicted ``|θ| ≤ m``: the mean over seeds with the same
crossed variance (jackknife pseudo-values of the condition alone), p-value of the TOST
``max(P(θ ≤ −m), P(θ ≥ m))``.

**Disjoint split** (``split: disjoint``, claim 4): the arm's evaluation sample of items never
annotated, official labels only; each seed has one prediction per fold model and its value is
the mean over those models (the item groups are the same for every model).

**Multiplicity**: Holm's step-down adjustment over the primary tests of all verdict arms (the
family; every primary test of the latest version of the claims file, co-primaries included);
each earlier version's primary tests form their own family ``registered-v<v>``, computed beside
the amended one; exploratory rows are adjusted within their own family and descriptive rows
within theirs. **Verdicts** (:mod:`softlab.inference.kinds`, five outcomes in this order):
``negligible`` when the interval excludes 0 (ratio 1) with Holm-adjusted p < α but the
``equivalence_confidence`` (90%) interval lies inside ± the margin; ``confirmed`` / ``refuted``
when significant on the predicted / other side and not inside; ``equivalent`` when not
significant and inside — a TOST at α = 5% per side, Schuirmann 1987; otherwise
``inconclusive``. A bound test is ``confirmed`` when its Holm-adjusted TOST p < α, ``refuted``
when its ``1 − α/family`` interval lies wholly beyond the bound. Fewer than ``min_seeds`` seeds →
``inconclusive``. ``beyond_margin``: the 95% interval lies wholly beyond the margin. **MDE**: the
effect detectable with the configured power at two-sided level ``α / family size`` (Holm's
first step).
"""

from __future__ import annotations

from softlab.inference.claims import (
    CLAIMS_PATH,
    KINDS,
    VERSIONS,
    Amendment,
    ArmRule,
    Claims,
    ClaimsError,
    Settings,
    TestSpec,
    load_claims,
    validate_claims_for,
)
from softlab.inference.estimators import (
    DIRECTIONS,
    Composite,
    DifferenceResult,
    PitmanMorgan,
    best_of,
    crossed_variance,
    difference_mde,
    holm,
    paired_difference,
    pitman_morgan,
    pseudo_values,
    seeds_for_power,
    sign_flip_interval,
    sign_flip_test,
    swap_permutation_variance_test,
    variance_ratio_mde,
)
from softlab.inference.kinds import (
    KIND_EVALUATORS,
    BoundKind,
    DifferenceKind,
    TestKind,
    VarianceRatioKind,
    decide_bound_verdict,
    decide_verdict,
    kind_of,
)
from softlab.inference.predictions import ArmPredictions
from softlab.inference.registry import (
    METRICS,
    OFFICIAL_LABEL_METRICS,
    MetricSpec,
    item_groups,
    leave_group_out_values,
)
from softlab.inference.schema import ClaimsFile, known_conditions
from softlab.inference.values import SPLITS, ArmValues
from softlab.inference.verdicts import (
    EXTRA_COLUMNS,
    FAMILIES,
    VERDICT_COLUMNS,
    VERDICTS,
    verdict_table,
    write_verdicts,
)
from softlab.stats import STRATA

__all__ = [
    "CLAIMS_PATH",
    "DIRECTIONS",
    "EXTRA_COLUMNS",
    "FAMILIES",
    "KINDS",
    "KIND_EVALUATORS",
    "METRICS",
    "OFFICIAL_LABEL_METRICS",
    "SPLITS",
    "STRATA",
    "VERDICTS",
    "VERDICT_COLUMNS",
    "VERSIONS",
    "Amendment",
    "ArmPredictions",
    "ArmRule",
    "ArmValues",
    "BoundKind",
    "Claims",
    "ClaimsError",
    "ClaimsFile",
    "Composite",
    "DifferenceKind",
    "DifferenceResult",
    "MetricSpec",
    "PitmanMorgan",
    "Settings",
    "TestKind",
    "TestSpec",
    "VarianceRatioKind",
    "best_of",
    "crossed_variance",
    "decide_bound_verdict",
    "decide_verdict",
    "difference_mde",
    "holm",
    "item_groups",
    "kind_of",
    "known_conditions",
    "leave_group_out_values",
    "load_claims",
    "paired_difference",
    "pitman_morgan",
    "pseudo_values",
    "seeds_for_power",
    "sign_flip_interval",
    "sign_flip_test",
    "swap_permutation_variance_test",
    "validate_claims_for",
    "variance_ratio_mde",
    "verdict_table",
    "write_verdicts",
]
