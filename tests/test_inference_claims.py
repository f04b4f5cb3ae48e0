"""The claims schema refuses what hostile probes found accepted (issue 27), in one line naming file, test and field."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from softlab import inference as inf
from softlab import labels


class NoAliasDumper(yaml.SafeDumper):
    """Writes every shared sub-mapping out in full: the strict loader refuses anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


PRIMARY = "soft-calibration-hard-vs-best-ts"


def _raw() -> dict:
    return yaml.safe_load(inf.CLAIMS_PATH.read_text())


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "claims.yml"
    path.write_text(yaml.dump(raw, Dumper=NoAliasDumper))  # shared sub-mappings written out, no anchors
    return path


def _primary(raw: dict, claim: str = "1", arm: str = "fashion-mnist") -> dict:
    return raw["claims"][claim]["arms"][arm]["primary"][0]  # the version-1 primary test


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(inf.ClaimsError) as info:
        inf.load_claims(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


# ------------------------------------------------------------------- names


def test_a_typo_in_the_condition_is_an_error_not_a_missing_test(tmp_path: Path) -> None:
    raw = _raw()
    _primary(raw)["condition"] = "human/humann"
    _refused(_write(tmp_path, raw), f"test {PRIMARY!r}", "field 'condition'", "unknown condition 'human/humann'")


def test_a_typo_inside_best_of_is_an_error(tmp_path: Path) -> None:
    raw = _raw()
    _primary(raw)["comparator"]["best_of"][1] = "human/hardd+ts"
    _refused(_write(tmp_path, raw), "field 'comparator.best_of'", "'human/hardd+ts'")


def test_a_typo_in_a_single_comparator_is_an_error(tmp_path: Path) -> None:
    raw = _raw()
    _primary(raw, "3")["comparator"] = "human/synthetc"
    _refused(_write(tmp_path, raw), "field 'comparator'", "'human/synthetc'")


def test_known_conditions_come_from_the_labels_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = _raw()
    _primary(raw, "3")["comparator"] = "human/brand-new"
    path = _write(tmp_path, raw)
    _refused(path, "'human/brand-new'")
    monkeypatch.setattr(labels, "ALL_CONDITIONS", (*labels.ALL_CONDITIONS, "human/brand-new"))
    assert "human/brand-new+ts" in inf.known_conditions()
    inf.load_claims(path)  # a condition added to softlab.labels is known without editing inference


def test_every_condition_of_the_shipped_file_is_known() -> None:
    claims = inf.load_claims()
    known = set(inf.known_conditions())
    for tests in claims.tests.values():
        for t in tests:
            assert {t.condition, *t.comparators} <= known


def test_an_unknown_metric_is_an_error(tmp_path: Path) -> None:
    raw = _raw()
    raw["claims"]["2"]["arms"]["synthetic-mnist"]["exploratory"][0]["metric"] = "acuracy"
    _refused(_write(tmp_path, raw), "claim 2, arm 'synthetic-mnist'", "field 'metric'", "'acuracy'")


def test_tests_for_an_arm_without_a_rule_are_an_error(tmp_path: Path) -> None:
    raw = _raw()
    raw["claims"]["1"]["arms"]["cifar10"] = raw["claims"]["1"]["arms"]["fashion-mnist"]
    raw["arms"].pop("*")
    _refused(_write(tmp_path, raw), "arm 'cifar10' has tests under 'claims' but no rule")


def test_an_arm_rule_pointing_at_an_arm_without_tests_is_an_error(tmp_path: Path) -> None:
    raw = _raw()
    raw["arms"]["*"]["tests_of"] = "fashion-mnistt"
    _refused(_write(tmp_path, raw), "arms, arm '*'", "field 'tests_of'")


# ------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -0.1, 0.0])
def test_a_margin_that_is_not_positive_and_finite_is_refused(tmp_path: Path, value: float) -> None:
    raw = _raw()
    _primary(raw, "3")["margin"]["value"] = value
    _refused(_write(tmp_path, raw), "field 'margin.value'", "positive finite")


def test_yaml_inf_margin_written_by_hand_is_refused(tmp_path: Path) -> None:
    text = inf.CLAIMS_PATH.read_text().replace(
        "margin: {value: 0.05, scale: absolute}", "margin: {value: .inf, scale: absolute}", 1
    )
    path = tmp_path / "claims.yml"
    path.write_text(text)
    _refused(path, "field 'margin.value'")


@pytest.mark.parametrize("value", [1.0, 10.0])
def test_a_relative_margin_of_100_percent_or_more_is_refused(tmp_path: Path, value: float) -> None:
    raw = _raw()
    _primary(raw)["margin"]["value"] = value
    _refused(_write(tmp_path, raw), "field 'margin'", "relative margin must be below 1")


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.05, float("nan")])
def test_alpha_outside_zero_one_is_refused(tmp_path: Path, alpha: float) -> None:
    raw = _raw()
    raw["settings"]["alpha"] = alpha
    _refused(_write(tmp_path, raw), "field 'settings.alpha'")


@pytest.mark.parametrize("value", [True, "1", 1.0])
def test_version_must_be_the_integer_itself(tmp_path: Path, value: object) -> None:
    raw = _raw()
    raw["version"] = value
    _refused(_write(tmp_path, raw), "field 'version'")


def test_a_boolean_is_not_a_number_anywhere(tmp_path: Path) -> None:
    raw = _raw()
    raw["settings"]["min_seeds"] = True
    _refused(_write(tmp_path, raw), "field 'settings.min_seeds'")


# ------------------------------------------------------------------- the YAML itself


def test_a_duplicated_margin_key_is_refused_not_last_wins(tmp_path: Path) -> None:
    text = inf.CLAIMS_PATH.read_text()
    marker = "margin: {value: 0.10, scale: relative}\n"
    i = text.index(marker)
    indent = text[:i].rsplit("\n", 1)[1]
    text = text[: i + len(marker)] + f"{indent}margin: {{value: 0.5, scale: relative}}\n" + text[i + len(marker) :]
    path = tmp_path / "claims.yml"
    path.write_text(text)
    _refused(path, "duplicated key 'margin'", "line ")


def test_a_duplicated_claim_id_is_refused(tmp_path: Path) -> None:
    text = inf.CLAIMS_PATH.read_text()
    block = text[text.index('  "3":\n') :]
    path = tmp_path / "claims.yml"
    path.write_text(text + block)
    _refused(path, "duplicated key '3'")


def test_an_alias_bomb_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "claims.yml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    _refused(path, "anchors are not allowed")
    assert time.perf_counter() - start < 0.5


def test_a_non_utf8_byte_names_the_file(tmp_path: Path) -> None:
    data = inf.CLAIMS_PATH.read_bytes().replace(b"Human soft labels regularise", b"Human soft labels r\xe9gularise", 1)
    path = tmp_path / "claims.yml"
    path.write_bytes(data)
    message = _refused(path, "not UTF-8", "byte 0xe9")
    assert "line " in message


def test_the_shipped_file_uses_no_anchors() -> None:
    text = inf.CLAIMS_PATH.read_text()
    assert "&claim" not in text and "*claim" not in text


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["alpha", "confidence", "equivalence_confidence", "power"]), st.floats(allow_nan=True))
def test_any_setting_probability_outside_the_unit_interval_is_refused(name: str, value: float) -> None:
    raw = _raw()
    raw["settings"][name] = value
    try:
        inf.ClaimsFile.model_validate(raw)
    except Exception as exc:  # pydantic's ValidationError
        assert not 0.0 < value < 1.0, exc
    else:
        assert 0.0 < value < 1.0


# ------------------------------------------------------------------- before training


DEFAULT_CONDITIONS = (*labels.CONDITIONS, "human/smooth-mass")


def test_validate_claims_for_the_default_conditions_passes() -> None:
    arms = dict.fromkeys(("fashion-mnist", "synthetic-mnist", "mnist", "my-votes"), DEFAULT_CONDITIONS)
    assert inf.validate_claims_for(arms).path == inf.CLAIMS_PATH


def test_validate_claims_for_refuses_a_set_that_drops_a_primary_comparator() -> None:
    conditions = [c for c in DEFAULT_CONDITIONS if c != "human/smooth"]
    with pytest.raises(inf.ClaimsError, match=rf"arm 'fashion-mnist', primary test {PRIMARY!r}: .*'human/smooth\+ts'"):
        inf.validate_claims_for({"fashion-mnist": conditions})


def test_validate_claims_for_ignores_descriptive_arms_and_exploratory_tests() -> None:
    inf.validate_claims_for({"mnist": ["original/hard"]})  # descriptive: no verdicts
    conditions = [c for c in DEFAULT_CONDITIONS if c != "human/smooth-mass"]  # only exploratory tests use it
    inf.validate_claims_for({"fashion-mnist": conditions})


def test_validate_claims_for_reads_the_file_so_a_bad_file_fails_first(tmp_path: Path) -> None:
    path = tmp_path / "claims.yml"
    path.write_text(inf.CLAIMS_PATH.read_text() + "version: 1\n")
    with pytest.raises(inf.ClaimsError, match="duplicated key 'version'"):
        inf.validate_claims_for({"fashion-mnist": DEFAULT_CONDITIONS}, path)
