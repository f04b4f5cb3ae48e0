"""Fuzzing parameter sets, names that become paths, CLI arguments and the claims file (issue 25):
each input is accepted within its rule or refused with one line, and a refusal writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _fuzz import fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from softlab.params import RULES, ParameterError, check_ranges
from softlab.validation import check_plain_name

values = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2, 10**9, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["../x", "/etc", "a/b", "..", ".hidden", "ok-name", "", " "]),
    st.lists(st.sampled_from(["mnist", "fashion-mnist", "nope", "human/human", "human/nonsense"]), max_size=3),
    st.dictionaries(st.sampled_from(["../../x", "my-votes", "/abs", "a b", "ok"]), st.just("v.csv"), max_size=2),
)


@fuzz(300)
@given(name=st.sampled_from(sorted(RULES)), value=values)
def test_every_parameter_value_is_in_its_rule_or_refused_in_one_line(name, value):
    rule = RULES[name]
    try:
        check_ranges({name: value})
    except ParameterError as exc:
        assert one_line(str(exc)) and f"parameter {name!r}" in str(exc)
        return
    assert rule.problem(value) is None
    if rule.kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool)
        assert rule.high is not None and value <= rule.high, "every count has an upper bound"
    if rule.plain_names:
        for n in value if isinstance(value, dict) else [value]:
            check_plain_name(n, name)


@fuzz(300)
@given(name=st.one_of(st.text(max_size=20), st.sampled_from(["..", "../a", "/a", "a/..", "a\\b", "~", "a\x00"])))
def test_a_plain_name_always_stays_inside_the_folder_it_is_joined_to(tmp_path_factory, name):
    root = Path("/srv/results")
    try:
        check_plain_name(name, "params_name")
    except ValueError as exc:
        assert one_line(str(exc)) and "params_name" in str(exc)
        return
    joined = Path(os.path.normpath(root / name))
    assert joined.parent == root and joined.name == name and not name.startswith(".")


@fuzz(12)
@given(
    key=st.sampled_from(["seeds", "folds", "epochs", "params_name", "votes", "lr", "arms", "unknown_key"]),
    value=st.sampled_from(["0", "-1", "1e9", "1000000000", "2.5", "abc", "[", "{a: 1, a: 2}", "../x", "/tmp/x",
                           "{../../x: v.csv}", "&a [1]", "null", "true", "[]"]),
)  # fmt: skip
def test_cli_set_values_are_refused_in_one_line_with_status_2_before_anything_runs(
    tmp_path_factory, monkeypatch, capsys, key, value
):
    import softlab.pipeline
    from softlab.cli import main

    ran: list[object] = []
    monkeypatch.setattr(softlab.pipeline, "run_notebooks", lambda *a, **k: ran.append(a))
    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    status = main(["run", "--params", "smoke", "--set", f"{key}={value}"])
    err = capsys.readouterr().err
    if status == 0:  # a valid override (e.g. seeds=2.5 is not; params_name=abc is): validated, then run
        assert ran and not err
        return
    assert status == 2 and not ran
    assert one_line(err) and err.startswith("softlab run: error: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--only"],
        ["run", "--params"],
        ["run", "--params", "../../etc/passwd"],
        ["run", "--params", "/nonexistent.yml"],
        ["train", "--members-per-task", "x"],
        ["data", "fetch", "--dataset", "nope"],
        ["run", "--dask", "not an address"],
        ["nope"],
        [],
    ],
)
def test_cli_argument_errors_are_one_line_status_2(argv, capsys):
    from softlab.cli import main

    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own one-line errors
        status = int(exc.code or 0)
    err = capsys.readouterr().err
    assert status == 2 and one_line(err.strip().splitlines()[-1]) and "Traceback" not in err


# --------------------------------------------------------------------------- the claims file

CLAIMS_MUTATIONS = [
    ("version: 1", "version: true"),
    ("version: 1", "version: [1]"),
    ("alpha:", "alpha: 2 #"),
    ("alpha:", "alpha: -0.1 #"),
    ("margin:", "margin: .nan #"),
    ("margin:", "margin: -1 #"),
    ("metric:", "metric: no_such_metric #"),
    ("condition:", "condition: human/humann #"),
    ("stratum:", "stratum: nowhere #"),
    ("claims:", "claims: 3\nextra:"),
]


@fuzz(6, shrink=False)
@given(
    mutations=st.lists(st.sampled_from(CLAIMS_MUTATIONS), min_size=1, max_size=3, unique=True),
    extra=st.sampled_from(["", "\nversion: 1\n", "\nbomb: &a [x, x]\nb2: [*a, *a]\n", "\n\x00", "\n: :"]),
)
def test_mutated_claims_files_are_refused_in_one_line_and_nothing_is_written(tmp_path_factory, mutations, extra):
    from softlab.inference import CLAIMS_PATH, ClaimsError, load_claims

    text = CLAIMS_PATH.read_text(encoding="utf-8")
    for old, new in mutations:
        text = text.replace(old, new, 1)
    folder = tmp_path_factory.mktemp("claims")
    path = folder / "claims.yml"
    path.write_bytes((text + extra).encode("utf-8"))
    try:
        load_claims(path)
    except ClaimsError as exc:
        assert one_line(str(exc))
    else:  # the mutation did not apply (e.g. a field absent from this file's layout) and the file is valid
        assert all(old not in text or new.split(" #")[0] in text for old, new in mutations)
    assert sorted(p.name for p in folder.iterdir()) == ["claims.yml"]
