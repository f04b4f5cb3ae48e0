"""From trained grids to the book's tables: evaluation records, the tidy metrics table and
claim verdicts. Sits above the metrics layer (it calls ``softlab.evaluation``/``stats``) and
below plots and notebooks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from softlab.evaluation import RunPredictions, evaluate_runs, write_metrics_table
from softlab.experiment import GridResults
from softlab.paths import results_dir

SPLITS = ("heldout", "disjoint")


def run_predictions(grid: GridResults, splits: tuple[str, ...] = SPLITS) -> list[RunPredictions]:
    """One record per (run, split): ``heldout`` = the labelled items of the run's held-out fold,
    scored against official labels and the reference distribution; ``disjoint`` = a sample of
    the disjoint split, official labels only."""
    arm = grid.arm
    ref_full = arm.reference_full()
    out = []
    for i, row in enumerate(grid.runs.itertuples(index=False)):
        for split in splits:
            if split == "heldout":
                pos, probs = grid.heldout(i)
                ids, official, human = arm.item_ids[pos], arm.official[pos], ref_full[pos]
            elif split == "disjoint":
                probs = grid.results[i].eval_probs["disjoint"]
                ids, official, human = np.arange(len(arm.disjoint_labels)), arm.disjoint_labels, None
            else:
                raise ValueError(f"splits: expected some of {SPLITS}, got {split!r}")
            out.append(RunPredictions(dataset=arm.config.dataset, condition=row.condition, seed=int(row.seed),
                                      fold=int(row.fold), split=split, probs=probs, item_ids=ids,
                                      official=official, human=human))
    return out


def metrics_table(grids: dict[str, GridResults], n_bins: int = 15) -> pd.DataFrame:
    """The tidy table (``dataset, condition, mode, shape, seed, fold, split, stratum, metric,
    value``) over every arm."""
    frames = [evaluate_runs(run_predictions(g), n_bins=n_bins) for g in grids.values()]
    return pd.concat(frames, ignore_index=True)


def metrics_path(params_name: str) -> Path:
    return results_dir() / params_name / "metrics.parquet"


def write_results(table: pd.DataFrame, params_name: str) -> Path:
    """Write ``results/<params_name>/metrics.parquet`` atomically; returns the path."""
    path = metrics_path(params_name)
    write_metrics_table(table, path)
    return path


MIN_SEEDS_FOR_VERDICT = 5


def verdict(ci_low: float, ci_high: float, null: float = 0.0, better: str = "lower",
            n: int | None = None, min_n: int = MIN_SEEDS_FOR_VERDICT) -> str:
    """``confirmed`` when the interval excludes ``null`` on the side the claim predicts,
    ``refuted`` when it excludes it on the other side, else ``inconclusive`` (also for NaN).

    A bootstrap over fewer than ``min_n`` independent units (seeds) cannot give a trustworthy
    interval, so with ``n < min_n`` the verdict is ``inconclusive (n < min_n)`` whatever the
    interval says.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better: expected 'lower' or 'higher', got {better!r}")
    if n is not None and n < min_n:
        return f"inconclusive (n={n} < {min_n})"
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    below, above = ci_high < null, ci_low > null
    if (better == "lower" and below) or (better == "higher" and above):
        return "confirmed"
    if (better == "lower" and above) or (better == "higher" and below):
        return "refuted"
    return "inconclusive"


def cartography_relations(grid: GridResults, reference: str = "human-mode") -> pd.DataFrame:
    """Per run: how its training dynamics on the labelled training items mirror the reference
    uncertainty. Tidy columns ``dataset, condition, mode, shape, seed, fold, reference, metric,
    value`` with metrics ``spearman_variability_entropy``, ``spearman_confidence_entropy``,
    ``auroc_variability_ambiguous`` (see :mod:`softlab.cartography`)."""
    from softlab.cartography import cartography_stats, human_uncertainty_relation
    from softlab.data.annotations import human_mode

    arm = grid.arm
    ref_full = arm.reference_full()
    rows = []
    for row in grid.runs.itertuples(index=False):
        dyn, pos = grid.dynamics(row.condition, row.seed, row.fold)
        h = ref_full[pos]
        target = {"official": arm.official[pos], "human-mode": human_mode(h, arm.official[pos]), "soft": h}[reference]
        rel = human_uncertainty_relation(cartography_stats(dyn, target), h)
        for metric in ("spearman_variability_entropy", "spearman_confidence_entropy", "auroc_variability_ambiguous"):
            rows.append({"dataset": arm.config.dataset, "condition": row.condition, "mode": row.mode,
                         "shape": row.shape, "seed": int(row.seed), "fold": int(row.fold), "reference": reference,
                         "metric": metric, "value": float(rel[metric])})
    return pd.DataFrame(rows)


def data_maps(grid: GridResults, seed: int = 0, fold: int = 0, conditions: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Data-map tables (``softlab.cartography.data_map_table``) of one seed and fold per
    condition, stacked with a ``condition`` column."""
    from softlab.cartography import data_map_table

    arm = grid.arm
    ref_full = arm.reference_full()
    frames = []
    for cond in conditions or tuple(grid.runs["condition"].unique()):
        dyn, pos = grid.dynamics(cond, seed, fold)
        table = data_map_table(dyn, arm.official[pos], ref_full[pos], item_ids=arm.item_ids[pos])
        frames.append(table.assign(condition=cond, dataset=arm.config.dataset))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- claims

def _verdict_rows(frame: pd.DataFrame, test: str, better: str, null: float = 0.0) -> list[dict]:
    rows = []
    for r in frame.itertuples(index=False):
        rows.append({"dataset": r.dataset, "test": test, "condition": r.condition, "baseline": r.baseline,
                     "mean_condition": r.mean_condition, "mean_baseline": r.mean_baseline,
                     "difference": r.difference,
                     "relative": r.difference / r.mean_baseline if r.mean_baseline else np.nan,
                     "ci_low": r.ci_low, "ci_high": r.ci_high, "seeds": int(r.n_clusters),
                     "verdict": verdict(r.ci_low, r.ci_high, null, better, n=int(r.n_clusters))})
    return rows


def claim_calibration(table: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Claim 1 — better calibration on difficult items (and some accuracy gain).

    Paired differences over seeds × folds (bootstrap over seeds): ECE on the **hard** stratum of
    the held-out items, ``human/human`` minus ``human/synthetic`` and minus ``human/smooth``
    (lower is better); accuracy of ``human/human`` minus ``human/hard`` (higher is better).
    """
    from softlab.stats import paired_differences

    held = table[table["split"] == "heldout"]
    hard_ece = held[(held["stratum"] == "hard") & (held["metric"] == "ece")]
    acc = held[(held["stratum"] == "all") & (held["metric"] == "accuracy")]
    rows: list[dict] = []
    for base in ("human/synthetic", "human/smooth"):
        d = paired_differences(hard_ece, baseline=base, conditions=["human/human"], by=["dataset"], cluster="seed", n_boot=n_boot)
        rows += _verdict_rows(d, f"ECE on hard items vs {base}", "lower")
    d = paired_differences(acc, baseline="human/hard", conditions=["human/human"], by=["dataset"], cluster="seed", n_boot=n_boot)
    rows += _verdict_rows(d, "accuracy vs human/hard", "higher")
    return pd.DataFrame(rows)


def claim_stability(table: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Claim 2 — more stable convergence across seeds.

    Ratio of across-seed variances of held-out accuracy (folds averaged within a seed),
    ``human/human`` over ``human/synthetic``, ``human/smooth`` and ``human/hard`` (below 1 = more
    stable), with a paired bootstrap over seeds.
    """
    from softlab.stats import variance_ratio

    acc = table[(table["split"] == "heldout") & (table["stratum"] == "all") & (table["metric"] == "accuracy")]
    frames = [variance_ratio(acc, numerator="human/human", denominator=den, by=["dataset"], n_boot=n_boot)
              for den in ("human/synthetic", "human/smooth", "human/hard")]
    ratios = pd.concat(frames, ignore_index=True)
    ratios["test"] = "variance of accuracy across seeds vs " + ratios["denominator"]
    ratios["verdict"] = [verdict(lo, hi, 1.0, "lower", n=int(n))
                         for lo, hi, n in zip(ratios["ci_low"], ratios["ci_high"], ratios["n_seeds"])]
    return ratios[["dataset", "test", "numerator", "denominator", "n_seeds", "var_numerator", "var_denominator",
                   "ratio", "ci_low", "ci_high", "verdict"]]


def claim_cartography(relations: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Claim 3 — training dynamics mirror human uncertainty.

    From :func:`cartography_relations`: paired differences of the Spearman correlation between
    confidence and reference entropy, ``human/human`` minus ``human/synthetic`` and minus
    ``human/human-shuffled`` (more negative = confidence follows human uncertainty more closely),
    and of the AUROC with which variability ranks reference-ambiguous items (higher is better).
    """
    from softlab.stats import paired_differences

    conf = relations[relations["metric"] == "spearman_confidence_entropy"]
    auc = relations[relations["metric"] == "auroc_variability_ambiguous"]
    rows: list[dict] = []
    for label, frame, base, better in (("Spearman(confidence, H) vs human/synthetic", conf, "human/synthetic", "lower"),
                                       ("Spearman(confidence, H) vs human/human-shuffled", conf, "human/human-shuffled", "lower"),
                                       ("AUROC(variability, ambiguous) vs human/synthetic", auc, "human/synthetic", "higher")):
        d = paired_differences(frame, baseline=base, conditions=["human/human"], by=["dataset"], cluster="seed", n_boot=n_boot)
        rows += _verdict_rows(d, label, better)
    return pd.DataFrame(rows)


CLAIMS = {
    1: "Human soft labels improve calibration on difficult items (and give some accuracy gain)",
    2: "Human soft labels make training more stable across seeds",
    3: "Training dynamics under human soft labels mirror human uncertainty",
}


def findings(table: pd.DataFrame, relations: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Every claim's tests in one table: ``claim, statement, dataset, test, estimate, ci_low,
    ci_high, relative, seeds, verdict`` (estimate: a paired difference for claims 1 and 3, a
    variance ratio for claim 2; relative: the difference over the baseline mean for claim 1,
    ratio − 1 for claim 2 — the form of the summary's "~10% better calibration" and "~15% lower
    variance")."""
    c1 = claim_calibration(table, n_boot).rename(columns={"difference": "estimate"})
    c2 = claim_stability(table, n_boot).rename(columns={"ratio": "estimate", "n_seeds": "seeds"})
    c2["relative"] = c2["estimate"] - 1.0
    c3 = claim_cartography(relations, n_boot).rename(columns={"difference": "estimate"})
    c3["relative"] = np.nan
    cols = ["dataset", "test", "estimate", "ci_low", "ci_high", "relative", "seeds", "verdict"]
    out = pd.concat([c[cols].assign(claim=k) for k, c in ((1, c1), (2, c2), (3, c3))], ignore_index=True)
    out["statement"] = out["claim"].map(CLAIMS)
    return out[["claim", "statement", *cols]]


def findings_summary(claims: pd.DataFrame, digits: int = 3) -> str:
    """Markdown: for each claim its statement, then one line per dataset arm quoting each test's
    estimate, 95% interval and verdict (from :func:`findings`)."""
    lines = []
    for claim, by_claim in claims.groupby("claim", sort=True):
        lines.append(f"**Claim {claim}: {by_claim['statement'].iloc[0]}.**\n")
        for dataset, part in by_claim.groupby("dataset", sort=True):
            tests = "; ".join(
                f"{r.test}: {r.estimate:+.{digits}f} [{r.ci_low:+.{digits}f}, {r.ci_high:+.{digits}f}]"
                + (f" ({r.relative:+.0%} relative)" if np.isfinite(getattr(r, "relative", np.nan)) else "")
                + f" — *{r.verdict}*"
                for r in part.itertuples(index=False))
            lines.append(f"- `{dataset}`: {tests}")
        lines.append("")
    return "\n".join(lines)
