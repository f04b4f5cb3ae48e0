"""Issue 22: five outcomes, beyond_margin, the bound kind, the disjoint split and the frozen version-1 primaries."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from softlab import inference as inf
from softlab import metrics as M

# ------------------------------------------------------------------- the registered version is never edited

# sha256 of the version-1 primary tests as registered (canonical JSON of claim, arm and every field
# but `registered`/`superseded`). Superseding a test (adding `superseded: 2` and a new test) keeps
# this hash; editing a registered test in place changes it and fails here.
V1_PRIMARIES_SHA256 = "cc7d09b513efb70c796c4c8e7eeed9ba153fc6f9670430c04b4c0dabb4da1b4f"


def _v1_primaries(raw: dict) -> list[dict]:
    found = []
    for cid, claim in sorted(raw["claims"].items()):
        for arm, block in sorted(claim["arms"].items()):
            tests = block["primary"] if isinstance(block["primary"], list) else [block["primary"]]
            for t in tests:
                if t.get("registered", 1) == 1:
                    body = {k: v for k, v in t.items() if k not in ("registered", "superseded")}
                    found.append({"claim": cid, "arm": arm, "test": body})
    return found


def _digest(raw: dict) -> str:
    blob = json.dumps(_v1_primaries(raw), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def test_version_1_primary_tests_are_unchanged() -> None:
    raw = yaml.safe_load(inf.CLAIMS_PATH.read_text())
    assert len(_v1_primaries(raw)) == 6
    assert _digest(raw) == V1_PRIMARIES_SHA256, (
        "a version-1 primary test was edited in place: supersede it by amendment instead "
        "(superseded: <version> on the old test, a new test with registered: <version>)"
    )


def test_the_guard_notices_an_edit_in_place_but_not_a_supersession() -> None:
    raw = yaml.safe_load(inf.CLAIMS_PATH.read_text())
    first = raw["claims"]["1"]["arms"]["fashion-mnist"]["primary"][0]
    superseded = json.loads(json.dumps(raw, default=str))
    superseded["claims"]["1"]["arms"]["fashion-mnist"]["primary"][0]["superseded"] = 2
    assert _digest(superseded) == _digest(raw)
    first["margin"]["value"] = 0.2
    assert _digest(raw) != V1_PRIMARIES_SHA256


def test_every_version_after_the_first_has_a_dated_amendment(tmp_path: Path) -> None:
    text = inf.CLAIMS_PATH.read_text()
    start = text.index("amendments:\n")
    end = text.index("\nsettings:")
    path = tmp_path / "claims.yml"
    path.write_text(text[:start] + text[end + 1 :])
    with pytest.raises(inf.ClaimsError, match="field 'amendments': expected one dated amendment"):
        inf.load_claims(path)
    path.write_text(text.replace("    date: 2026-12-03\n", "    date: soon\n"))
    with pytest.raises(inf.ClaimsError, match=r"amendments\.date"):
        inf.load_claims(path)


# ------------------------------------------------------------------- the five outcomes


def _verdict(**kw):
    base = dict(
        direction="lower",
        ci=(-0.5, -0.1),
        equivalence_ci=(-0.45, -0.15),
        equivalence_bounds=(-1.0, 1.0),
        p_adjusted=0.01,
        seeds=10,
        min_seeds=10,
        alpha=0.05,
    )
    base.update(kw)
    return inf.decide_verdict(**base)


def test_the_order_of_the_five_outcomes() -> None:
    assert _verdict() == "negligible"  # significant, but wholly inside +-1
    assert _verdict(equivalence_bounds=(-0.3, 0.3)) == "confirmed"
    assert _verdict(equivalence_bounds=(-0.3, 0.3), direction="higher") == "refuted"
    assert _verdict(ci=(-0.5, 0.1), equivalence_ci=(-0.45, 0.05), p_adjusted=0.3) == "equivalent"
    assert _verdict(ci=(-0.5, 0.1), equivalence_bounds=(-0.3, 0.3), p_adjusted=0.3) == "inconclusive"


intervals = st.tuples(st.floats(-3, 3), st.floats(0, 3)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=300, deadline=None)
@given(intervals, intervals, st.floats(0.01, 2), st.floats(0, 1), st.sampled_from(["lower", "higher"]))
def test_no_confirmed_or_refuted_row_lies_inside_its_margin(ci, eq, margin, p, direction) -> None:
    verdict = _verdict(
        ci=ci, equivalence_ci=eq, equivalence_bounds=(-margin, margin), p_adjusted=p, direction=direction
    )
    inside = -margin < eq[0] and eq[1] < margin
    significant = p < 0.05 and (ci[1] < 0 or ci[0] > 0)
    assert verdict in inf.VERDICTS
    if inside:
        assert verdict in ("negligible", "equivalent")
    if verdict in ("confirmed", "refuted", "negligible"):
        assert significant
    assert (verdict == "negligible") == (significant and inside)


def test_bound_verdicts() -> None:
    base = dict(p_adjusted=0.01, family_ci=(-0.1, 0.1), bound=0.2, seeds=10, min_seeds=10, alpha=0.05)
    assert inf.decide_bound_verdict(**base) == "confirmed"
    assert inf.decide_bound_verdict(**(base | {"p_adjusted": 0.4})) == "inconclusive"
    assert inf.decide_bound_verdict(**(base | {"p_adjusted": 0.9, "family_ci": (-0.8, -0.5)})) == "refuted"
    assert inf.decide_bound_verdict(**(base | {"p_adjusted": 0.9, "family_ci": (-0.8, -0.1)})) == "inconclusive"
    assert inf.decide_bound_verdict(**(base | {"seeds": 9})) == "inconclusive"
    assert inf.decide_bound_verdict(**(base | {"descriptive": True})) == "descriptive"


# ------------------------------------------------------------------- an arm built by hand


def _arm(seeds: int = 10, items: int = 300, classes: int = 4, seed: int = 0, folds: int = 3, sharp: float = 1.0):
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.full(classes, 0.5), size=items)
    official = ref.argmax(1)
    strata = {"all": np.ones(items, bool)}
    probs = {}
    for k, cond in enumerate(("human/human", "human/synthetic")):
        logits = rng.normal(size=(seeds, items, classes)) + (sharp + k) * np.log(ref + 1e-3)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        probs[cond] = p / p.sum(-1, keepdims=True)
    n_disjoint = 120
    disjoint_official = rng.integers(0, classes, n_disjoint)
    disjoint = {}
    for k, cond in enumerate(("human/human", "human/synthetic")):
        logits = rng.normal(size=(seeds, folds, n_disjoint, classes))
        logits[..., :][
            np.arange(seeds)[:, None, None], np.arange(folds)[None, :, None], np.arange(n_disjoint), disjoint_official
        ] += 1.0 + 0.3 * k
        p = np.exp(logits - logits.max(-1, keepdims=True))
        disjoint[cond] = p / p.sum(-1, keepdims=True)
    return inf.ArmPredictions(
        "fashion-mnist",
        "human",
        np.arange(seeds),
        official,
        ref,
        strata,
        probs,
        {},
        disjoint_official=disjoint_official,
        disjoint_probs=disjoint,
    )


def _claims(*tests: inf.TestSpec, item_groups: int = 0) -> inf.Claims:
    return inf.Claims(
        Path("test-claims.yml"),
        inf.Settings(item_groups=item_groups, item_group_seed=3),
        {"3": "s", "4": "s"},
        {"fashion-mnist": inf.ArmRule("verdict", "fashion-mnist")},
        {"fashion-mnist": tests},
        version=2,
    )


def _test(**kw) -> inf.TestSpec:
    base = dict(
        claim="3",
        name="t",
        primary=True,
        kind="bound",
        metric="spearman_max_probability_entropy",
        stratum="all",
        condition="human/synthetic",
        comparators=(),
        comparator_rule="single",
        direction="within",
        margin=0.2,
        margin_scale="absolute",
        rationale="r",
        primary_versions=(2,),
        registered=2,
    )
    base.update(kw)
    return inf.TestSpec(**base)


@pytest.mark.parametrize("sharp", [0.02, 1.0])
def test_the_bound_test_is_a_tost_of_the_per_seed_values(sharp: float) -> None:
    arm = _arm(sharp=sharp)
    row = inf.verdict_table({"fashion-mnist": arm}, _claims(_test())).iloc[0]
    # independent reference: scipy's one-sample t tests of the per-seed Spearman correlations against +-0.2
    rho = np.array([sps.spearmanr(p.max(-1), M.entropy(arm.reference)).statistic for p in arm.probs["human/synthetic"]])
    p_low = sps.ttest_1samp(rho, -0.2, alternative="greater").pvalue
    p_high = sps.ttest_1samp(rho, 0.2, alternative="less").pvalue
    assert row["estimate"] == pytest.approx(rho.mean())
    assert row["p_value"] == pytest.approx(max(p_low, p_high), rel=1e-9)
    lo, hi = sps.t.interval(0.95, len(rho) - 1, loc=rho.mean(), scale=sps.sem(rho))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert row["verdict"] == ("confirmed" if max(p_low, p_high) < 0.05 else row["verdict"])
    assert row["beyond_margin"] == bool(lo > 0.2 or hi < -0.2)
    assert row["comparator"] == "|value| <= 0.2" and math.isnan(row["mean_comparator"])


def test_a_model_that_mirrors_strongly_refutes_the_bound() -> None:
    arm = _arm(sharp=3.0)
    row = inf.verdict_table({"fashion-mnist": arm}, _claims(_test())).iloc[0]
    assert row["estimate"] < -0.5 and row["verdict"] == "refuted" and row["beyond_margin"]


def test_a_model_that_does_not_mirror_confirms_the_bound() -> None:
    rng = np.random.default_rng(9)
    arm = _arm()
    noise = rng.dirichlet(np.ones(4), size=arm.probs["human/synthetic"].shape[:2])  # unrelated to the reference
    arm = inf.ArmPredictions(
        arm.arm, "human", arm.seeds, arm.official, arm.reference, arm.strata, {"human/synthetic": noise}, {}
    )
    row = inf.verdict_table({"fashion-mnist": arm}, _claims(_test(), item_groups=20)).iloc[0]
    assert abs(row["estimate"]) < 0.1 and row["verdict"] == "confirmed" and not row["beyond_margin"]
    assert row["item_groups"] == 20


def test_the_disjoint_split_averages_each_seeds_fold_models() -> None:
    arm = _arm()
    test = _test(
        claim="4",
        kind="difference",
        metric="accuracy",
        split="disjoint",
        condition="human/human",
        comparators=("human/synthetic",),
        direction="higher",
        margin=0.005,
    )
    row = inf.verdict_table({"fashion-mnist": arm}, _claims(test)).iloc[0]
    acc = {c: (p.argmax(-1) == arm.disjoint_official).mean(axis=(1, 2)) for c, p in arm.disjoint_probs.items()}
    d = acc["human/human"] - acc["human/synthetic"]
    assert row["estimate"] == pytest.approx(d.mean())
    assert row["mean_condition"] == pytest.approx(acc["human/human"].mean())
    assert row["mean_comparator"] == pytest.approx(acc["human/synthetic"].mean())
    lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))  # no item groups: paired t
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert row["split"] == "disjoint" and row["n_items"] == 120


def test_the_disjoint_jackknife_groups_items_not_fold_predictions() -> None:
    arm = _arm()
    values = inf.ArmValues(arm, n_groups=10, group_seed=1, with_groups=True)
    table = values.values("human/human", "accuracy", "all", split="disjoint")
    groups = values.groups("all", "disjoint")
    assert table.shape == (10, 11) and groups is not None and groups.size == 120
    correct = arm.disjoint_probs["human/human"].argmax(-1) == arm.disjoint_official  # (S, F, J)
    keep = groups != 4
    np.testing.assert_allclose(table[:, 5], correct[:, :, keep].mean(axis=(1, 2)))


def test_a_test_on_a_missing_disjoint_sample_does_not_run() -> None:
    arm = _arm()
    bare = inf.ArmPredictions(arm.arm, "human", arm.seeds, arm.official, arm.reference, arm.strata, arm.probs, {})
    test = _test(
        kind="difference",
        metric="accuracy",
        split="disjoint",
        condition="human/human",
        comparators=("human/synthetic",),
        direction="higher",
        margin=0.005,
    )
    assert inf.verdict_table({"fashion-mnist": bare}, _claims(test)).empty


def test_disjoint_tests_may_name_official_label_metrics_only(tmp_path: Path) -> None:
    raw = yaml.safe_load(inf.CLAIMS_PATH.read_text())
    raw["claims"]["4"]["arms"]["fashion-mnist"]["primary"][0]["metric"] = "kl_human"

    class NoAlias(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:
            return True

    path = tmp_path / "claims.yml"
    path.write_text(yaml.dump(raw, Dumper=NoAlias))
    with pytest.raises(inf.ClaimsError, match="field 'split': the disjoint sample has official labels only"):
        inf.load_claims(path)


# ------------------------------------------------------------------- beyond the margin


def test_beyond_margin_per_kind() -> None:
    diff = inf.KIND_EVALUATORS["difference"]
    ratio = inf.KIND_EVALUATORS["variance_ratio"]

    class Row:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    absolute = dict(
        margin_scale="absolute", margin=0.05, relative=math.nan, relative_ci_low=math.nan, relative_ci_high=math.nan
    )
    assert diff.beyond_margin(Row(estimate=-0.1, ci_low=-0.12, ci_high=-0.06, **absolute))
    assert not diff.beyond_margin(Row(estimate=-0.1, ci_low=-0.12, ci_high=-0.04, **absolute))
    assert diff.beyond_margin(Row(estimate=0.1, ci_low=0.06, ci_high=0.2, **absolute))
    relative = dict(margin_scale="relative", margin=0.1, estimate=1.0, ci_low=0.5, ci_high=1.5)
    assert diff.beyond_margin(Row(relative=0.5, relative_ci_low=0.2, relative_ci_high=0.8, **relative))
    assert not diff.beyond_margin(Row(relative=0.5, relative_ci_low=0.05, relative_ci_high=0.8, **relative))
    # variance ratio, margin 0.15: region (0.85, 1/0.85)
    assert ratio.beyond_margin(Row(estimate=0.6, ci_low=0.4, ci_high=0.8, margin=0.15, margin_scale="relative"))
    assert not ratio.beyond_margin(Row(estimate=0.6, ci_low=0.4, ci_high=0.9, margin=0.15, margin_scale="relative"))
    assert ratio.beyond_margin(Row(estimate=2.0, ci_low=1.2, ci_high=3.0, margin=0.15, margin_scale="relative"))
