"""The book's presentation helpers: number formatting, narrow tables, verdict rows and plain
sentences built from a verdict table, checked against hand-written expectations."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softlab import present as PR


def verdict_rows() -> pd.DataFrame:
    """A small verdict table in the shape softlab.inference.verdict_table returns (claims as text)."""
    base = {
        "primary": True,
        "stratum": "all",
        "condition": "human/human",
        "direction": "lower",
        "seeds": 10,
        "p_value": 0.01,
        "comparator_set": "",
        "margin_scale": "absolute",
        "kind": "difference",
        "relative": np.nan,
        "relative_ci_low": np.nan,
        "relative_ci_high": np.nan,
        "mde_relative": np.nan,
    }
    rows = [
        {
            **base,
            "claim": "1",
            "arm": "fashion-mnist",
            "metric": "debiased_ce_soft",
            "stratum": "hard",
            "comparator": "human/synthetic+ts",
            "comparator_set": "original/hard+ts, human/hard+ts, human/synthetic+ts",
            "margin_scale": "relative",
            "margin": 0.1,
            "estimate": 0.0023,
            "ci_low": 0.0012,
            "ci_high": 0.0032,
            "mean_condition": 0.0052,
            "mean_comparator": 0.0029,
            "relative": 0.799,
            "relative_ci_low": 0.293,
            "relative_ci_high": 1.184,
            "p_adjusted": 0.00022,
            "mde": 0.0016,
            "mde_relative": 0.55,
            "verdict": "refuted",
        },
        {
            **base,
            "claim": "1",
            "arm": "synthetic-mnist",
            "metric": "debiased_ce_soft",
            "stratum": "hard",
            "comparator": "human/synthetic+ts",
            "comparator_set": "original/hard+ts, human/hard+ts, human/synthetic+ts",
            "margin_scale": "relative",
            "margin": 0.1,
            "estimate": 0.0019,
            "ci_low": 0.0005,
            "ci_high": 0.003,
            "relative": 0.159,
            "relative_ci_low": 0.032,
            "relative_ci_high": 0.255,
            "p_adjusted": 0.015,
            "mde": 0.002,
            "mde_relative": 0.16,
            "verdict": "refuted",
        },
        {
            **base,
            "claim": "2",
            "arm": "fashion-mnist",
            "metric": "accuracy",
            "comparator": "human/synthetic",
            "kind": "variance_ratio",
            "margin_scale": "relative",
            "margin": 0.15,
            "estimate": 0.68251,
            "ci_low": 0.1773,
            "ci_high": 2.627,
            "relative": -0.3175,
            "relative_ci_low": -0.8227,
            "relative_ci_high": 1.627,
            "p_adjusted": 0.85,
            "mde": 0.0878,
            "verdict": "inconclusive",
        },
        {
            **base,
            "claim": "3",
            "arm": "fashion-mnist",
            "metric": "spearman_confidence_entropy",
            "comparator": "human/synthetic",
            "margin": 0.05,
            "estimate": -0.0275,
            "ci_low": -0.0354,
            "ci_high": -0.0196,
            "p_adjusted": 1.4e-6,
            "mde": 0.0143,
            "verdict": "confirmed",
        },
        {
            **base,
            "claim": "3",
            "arm": "fashion-mnist",
            "metric": "kl_human",
            "primary": False,
            "comparator": "human/hard",
            "margin": 0.05,
            "estimate": 1e-12,
            "ci_low": -0.01,
            "ci_high": 0.01,
            "p_adjusted": 1.0,
            "mde": 0.01,
            "verdict": "inconclusive",
        },
    ]
    return pd.DataFrame(rows)


def test_fmt_number_is_positional_with_three_significant_figures():
    assert PR.fmt_number(0.000123456) == "0.000123"
    assert PR.fmt_number(1.23456) == "1.23"
    assert PR.fmt_number(1234.5) == "1\u202f234"  # thousands by a narrow no-break space, never "1.23e+03"
    assert PR.fmt_number(12000) == "12\u202f000" and PR.fmt_number(9999) == "9999"
    assert PR.fmt_number(float("nan")) == PR.fmt_number(None) == "–"
    assert PR.fmt_number(0.0) == "0"
    assert PR.fmt_number(-0.0275) == "\u22120.0275"  # the minus sign, not a hyphen


def test_fmt_number_is_the_one_format_for_signs_and_percentages():
    assert PR.fmt_number(0.0023, sign=True) == "+0.0023" and PR.fmt_number(-0.028, sign=True) == "\u22120.028"
    assert PR.fmt_number(0.0, sign=True) == "0"  # no sign on zero
    assert PR.fmt_number(0.1234, percent=True) == "12.3%" and PR.fmt_number(1.0, percent=True) == "100%"
    assert PR.fmt_number(0.799, sign=True, percent=True) == "+79.9%"
    assert PR.fmt_number(-1.184, sign=True, percent=True) == "\u2212118%"
    assert PR.fmt_number(0.55, 2, percent=True) == "55%" and PR.fmt_number(float("nan"), percent=True) == "–"
    assert PR.fmt_number(-12000) == "\u221212\u202f000"
    assert PR.parse_number("\u221212.3%") == pytest.approx(-0.123)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1e-12))
def test_fmt_number_never_uses_e_notation_and_keeps_the_value(v):
    text = PR.fmt_number(v)
    assert "e" not in text.lower() and "-" not in text
    if v != 0 and abs(v) < 1000:
        assert PR.parse_number(text) == pytest.approx(v, rel=5e-3)  # three significant figures


def test_fmt_p():
    assert PR.fmt_p(1.4e-6) == "< 0.001"
    assert PR.fmt_p(0.0153) == "0.015"
    assert PR.fmt_p(float("nan")) == "–"


def test_table_html_is_narrow_typed_and_stable():
    df = pd.DataFrame(
        {
            "condition": ["human/human", "original/hard"],
            "TV": [9.7e-9, 0.3341],
            "share": [0.825, 1.0],
            "verdict": ["refuted", "inconclusive (n=3 < 10)"],
        }
    )
    html = PR.table(df, percent=["share"], uuid="x").to_html()
    assert html == PR.table(df, percent=["share"], uuid="x").to_html()  # byte-stable
    assert ">0<" in html and "9.7" not in html  # float noise below 1e-6 shows as 0
    assert "0.334" in html and "82.5%" in html and "100%" in html
    assert "human/<wbr>human" in html  # long names may wrap after "/"
    assert PR.VERDICT_COLOURS["refuted"] in html and PR.VERDICT_COLOURS["inconclusive"] in html
    assert "white-space: nowrap" in html
    assert not re.search(r"<th[^>]*>\s*0\s*</th>", html)  # no index column


def test_claim_rows_match_text_claims_and_show_each_test_in_its_own_scale():
    v = verdict_rows()
    c1 = PR.claim_rows(v, 1)  # an int claim finds the text claims
    assert list(c1.columns) == ["arm", "comparison", "values", "estimate [95% CI]", "p (Holm)", "MDE", "verdict"]
    assert c1["values"].iloc[0] == "0.0052 vs 0.0029"  # absolute values beside the relative effect
    assert c1["values"].iloc[1] == "– vs –"  # a table without the means
    assert c1["estimate [95% CI]"].tolist() == ["+79.9% [+29.3%, +118%]", "+15.9% [+3.2%, +25.5%]"]
    assert c1["p (Holm)"].tolist() == ["< 0.001", "0.015"]
    assert c1["MDE"].tolist() == ["55%", "16%"]
    assert c1["comparison"].iloc[0] == "human/human vs human/synthetic+ts"
    # the synthetic arm's reference is the generator: no human labelled those images
    assert c1["comparison"].iloc[1] == "generator/generator vs generator/synthetic+ts"
    c2 = PR.claim_rows(v, "2")
    assert c2["estimate [95% CI]"].iloc[0] == "0.683 [0.177, 2.63]"  # the variance ratio itself
    assert c2["MDE"].iloc[0] == "0.088"
    every = PR.claim_rows(v, None)
    assert len(every) == 4 and every["claim · arm"].iloc[-1] == "3 · fashion-mnist"
    assert len(every.columns) == 7
    exploratory = PR.claim_rows(v, 3, primary=False)
    assert exploratory["estimate [95% CI]"].iloc[0] == "0 [\u22120.01, +0.01]"  # 1e-12 is noise; differences signed


def test_claim_sentences_are_plain_and_carry_the_numbers():
    v = verdict_rows()
    one = PR.claim_headline(v, 1)
    assert one.startswith("**Refuted** on both verdict arms")
    assert "79.9% (Fashion-MNIST-H) and 15.9% (synthetic MNIST) higher" in one
    assert "best of 3 pre-registered baselines (`human/synthetic+ts`)" in one
    two = PR.claim_sentence(v, 2)
    assert two.startswith("**Inconclusive** on the Fashion-MNIST-H arm")
    assert "0.68 times" in two and "0.18 to 2.6" in two and "below 0.088" in two
    three = PR.claim_sentence(v, 3)
    assert "0.0275 lower" in three and "smaller than the pre-registered smallest effect of interest, 0.05" in three
    bullets = PR.claim_sentences(v, links=True).splitlines()
    assert len(bullets) == 3 and bullets[1].endswith("Evidence: {ref}`claim-2`.")
    assert PR.claim_sentence(v, 9) == "No primary test of this claim could run with this parameter set."


def test_scaled_effects_point_the_way_the_claim_predicts():
    out = PR.scaled_effects(verdict_rows().iloc[:4])
    # claim 1: +79.9% where lower was predicted, margin 10% -> about -8 margins (against the claim)
    assert out["scaled_estimate"].iloc[0] == pytest.approx(-7.99)
    assert out["scaled_low"].iloc[0] == pytest.approx(-11.84) and out["scaled_high"].iloc[0] == pytest.approx(-2.93)
    # claim 3: -0.0275 with margin 0.05, lower predicted -> +0.55 (for the claim, inside the margin)
    assert out["scaled_estimate"].iloc[3] == pytest.approx(0.55)
    assert out["label"].iloc[0] == "claim 1 · Fashion-MNIST-H"


def test_param_line_names_the_set_and_skipped_arms():
    p = {
        "params_name": "default",
        "arms": ["fashion-mnist"],
        "model": "mlp",
        "hidden": 128,
        "epochs": 6,
        "seeds": 10,
        "folds": 5,
        "run_folds": 0,
    }
    assert PR.run_description(p) == "an MLP (128 hidden units), 6 epochs, 10 seeds × 5 folds"
    line = PR.param_line(p, skipped={"cifar10": "download it"})
    assert line.startswith("*Computed with the `default` parameter set")
    assert "**The `cifar10` arm was skipped:** download it" in line
    assert PR.run_description({**p, "run_folds": 1}).endswith("1 of 5 folds")


def test_csv_link_carries_the_whole_table():
    df = pd.DataFrame({"a": [1, 2], "b": ["x,y", "z"]})
    html = PR.csv_link(df, "t.csv", "Download")._repr_html_()
    payload = re.search(r"base64,([A-Za-z0-9+/=]+)", html).group(1)
    assert base64.b64decode(payload).decode() == df.to_csv(index=False)
    assert 'download="t.csv"' in html


def _versioned() -> pd.DataFrame:
    v = verdict_rows()
    v["test"] = [f"t{c}" for c in v["claim"]]
    v["family"] = np.where(v["primary"], "primary", "exploratory")
    v["registered_version"] = 2
    v1 = v[v["primary"]].copy()
    v1["family"], v1["primary"], v1["registered_version"] = "registered-v1", False, 1
    v1.loc[v1["claim"] == "3", "test"] = "t3-mode"  # superseded by the amendment
    v1.loc[v1["claim"] == "1", "verdict"] = "inconclusive"  # another family, another Holm adjustment
    return pd.concat([v, v1], ignore_index=True)


def test_registered_and_amended_verdicts_side_by_side():
    side = PR.registered_vs_amended(_versioned())
    assert list(side.columns) == ["claim", "arm", "test", "as registered (v1)", "as amended (v2)", "family sizes"]
    row = side[(side["claim"] == "1") & (side["arm"] == "fashion-mnist")].iloc[0]
    assert row["as registered (v1)"].startswith("inconclusive: +79.9%")
    assert row["as amended (v2)"].startswith("refuted: +79.9%")
    superseded = side[side["test"] == "t3-mode"].iloc[0]
    assert superseded["as amended (v2)"] == "–" and superseded["as registered (v1)"] != "–"
    added = side[side["test"] == "t3"].iloc[0]
    assert added["as registered (v1)"] == "–"


def test_claim_rows_leave_out_the_registered_family():
    rows = PR.claim_rows(_versioned(), 1)
    assert len(rows) == 2 and set(rows["verdict"]) == {"refuted"}
    with pytest.raises(ValueError, match="registered_version"):
        PR.registered_vs_amended(verdict_rows())


def test_scaled_effects_read_the_scale_from_the_kind_evaluators():
    v = verdict_rows()
    out = PR.scaled_effects(v)
    rel = out.iloc[0]  # relative margin 0.1, direction lower: +79.9% is -7.99 margins (against the claim)
    assert rel["scaled_estimate"] == pytest.approx(-7.99)
    bound = v.iloc[[0]].assign(kind="bound", direction="within", margin=0.2, estimate=-0.7, ci_low=-0.75, ci_high=-0.65)
    scaled = PR.scaled_effects(bound).iloc[0]
    assert scaled["scaled_estimate"] == pytest.approx(0.7 / 0.2)  # its own value, not the relative column


def test_the_primary_family_includes_co_primaries():
    v = _versioned()
    v.loc[1, "primary"] = False  # a co-primary: in the family, without the headline flag
    assert PR.primary_family_size(v) == int((v["family"] == "primary").sum()) == 4
    assert len(PR.primary_family(v)) == 4 and int(v["primary"].sum()) == 3


def test_conditions_are_named_after_each_arms_reference_in_sentences_and_titles():
    v = verdict_rows()
    v.loc[1, "comparator_set"] = ""  # the synthetic arm's test named in full, not "same as the first arm"
    v.loc[1, "metric"] = "ece_soft"
    one = PR.claim_sentence(v, 1)
    assert "under `generator/generator` than under `generator/synthetic+ts`" in one
    assert "under `human/human` than under `human/synthetic+ts`" in one  # Fashion-MNIST-H keeps its names
    assert PR.shown_condition("human/hard+ts-official", "synthetic-mnist") == "generator/hard+ts-official"
    assert PR.shown_condition("human/sampled", "fashion-mnist") == "human/sampled"
    assert PR.arm_title("synthetic-mnist") == "synthetic MNIST (“human” = generator)"
    assert PR.arm_title("fashion-mnist") == "Fashion-MNIST-H"
