"""The strict YAML loader: duplicated keys, anchors/aliases and non-UTF-8 bytes are refused in one line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from softlab.yamlio import YamlError, load_yaml

ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def one_line(message: str) -> bool:
    return "\n" not in message and "Traceback" not in message


def test_plain_document_parses_like_safe_load() -> None:
    text = "a: 1\nb: [x, {c: 2.5, d: null}]\nc: {e: .inf}\n"
    assert load_yaml(text, what="test") == yaml.safe_load(text)


def test_empty_document_is_none() -> None:
    assert load_yaml("", what="test") is None


def test_duplicated_top_level_key_names_file_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "claims.yml"
    path.write_text("alpha: 0.05\nbeta: 1\nalpha: 0.5\n")
    with pytest.raises(YamlError) as info:
        load_yaml(path, what="claims file")
    message = str(info.value)
    assert message.startswith(f"claims file {path}, line 3: duplicated key 'alpha' (first on line 1)")
    assert one_line(message)


def test_duplicated_nested_key_is_refused() -> None:
    text = "claims:\n  '1':\n    arms:\n      x:\n        margin: {value: 0.1, value: 0.2}\n"
    with pytest.raises(YamlError, match=r"line 5: duplicated key 'value'"):
        load_yaml(text, what="claims file")


def test_duplicated_key_inside_a_list_of_mappings_is_refused() -> None:
    with pytest.raises(YamlError, match=r"line 3: duplicated key 'name'"):
        load_yaml("tests:\n  - name: a\n    name: b\n", what="claims file")


def test_equal_keys_in_sibling_mappings_are_fine() -> None:
    assert load_yaml("a: {k: 1}\nb: {k: 2}\n", what="test") == {"a": {"k": 1}, "b": {"k": 2}}


def test_keys_equal_after_yaml_typing_are_duplicates() -> None:
    # 1 and 0x1 are the same int key once constructed
    with pytest.raises(YamlError, match="duplicated key 1"):
        load_yaml("1: a\n0x1: b\n", what="test")


def test_anchor_is_refused_with_its_line() -> None:
    with pytest.raises(YamlError, match=r"test <text>, line 2: YAML anchors are not allowed \('&x'\)"):
        load_yaml("a: 1\nb: &x {c: 2}\nd: *x\n", what="test")


def test_merge_key_is_refused() -> None:
    with pytest.raises(YamlError, match="anchors"):
        load_yaml("a: &x {c: 2}\nb:\n  <<: *x\n", what="test")


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    assert len(ALIAS_BOMB.encode()) <= 901
    path = tmp_path / "bomb.yml"
    path.write_text(ALIAS_BOMB)
    start = time.perf_counter()
    with pytest.raises(YamlError, match=r"bomb.yml, line 1: YAML anchors are not allowed"):
        load_yaml(path, what="claims file")
    assert time.perf_counter() - start < 0.5


def test_non_utf8_byte_names_file_line_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "claims.yml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(YamlError) as info:
        load_yaml(path, what="claims file")
    message = str(info.value)
    assert message == f"claims file {path}, line 2: not UTF-8 (byte 0xe9 at offset 20)"
    assert not isinstance(info.value, UnicodeDecodeError)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(YamlError, match=r"claims file .*nope.yml: no such file$"):
        load_yaml(tmp_path / "nope.yml", what="claims file")


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(YamlError) as info:
        load_yaml("a: 1\nb: [1, 2\nc: 3\n", what="parameter set", name="x.yml")
    assert str(info.value).startswith("parameter set x.yml, line ")
    assert "invalid YAML" in str(info.value)
    assert one_line(str(info.value))


def test_unhashable_key_is_refused() -> None:
    with pytest.raises(YamlError, match="mapping key must be a plain value"):
        load_yaml("? [1, 2]\n: x\n", what="test")


def test_multiple_documents_are_refused() -> None:
    with pytest.raises(YamlError, match="invalid YAML"):
        load_yaml("a: 1\n---\nb: 2\n", what="test")


keys = st.text(alphabet="abcdefghij", min_size=1, max_size=4)
scalars = st.one_of(st.integers(-1000, 1000), st.booleans(), st.none(), keys)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_any_alias_free_document_round_trips(document: object) -> None:
    assert load_yaml(yaml.safe_dump(document), what="test") == document


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, st.integers(), min_size=1, max_size=5), st.data())
def test_any_repeated_key_is_refused(mapping: dict[str, int], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(mapping)))
    text = yaml.safe_dump(mapping) + f"{key}: 0\n"
    with pytest.raises(YamlError, match="duplicated key"):
        load_yaml(text, what="test")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_any_bytes_give_a_value_or_a_yaml_error(data: bytes) -> None:
    try:
        load_yaml(data, what="test")
    except YamlError as exc:
        assert one_line(str(exc))
