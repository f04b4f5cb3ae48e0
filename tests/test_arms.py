"""The table of dataset arms (softlab.arms): every reader of arm facts reads from it, and its
default roles agree with params/claims.yml."""

from __future__ import annotations

import dataclasses

import pytest

import softlab.arms
from softlab import chapter, present
from softlab.arms import ARM_SPECS, ARMS, ArmSpec, arm_spec, known_arms
from softlab.experiment import REFERENCE_LOADERS, ArmConfig, configs_from_params, data_versions
from softlab.inference import load_claims
from softlab.io import config_key
from softlab.params import MODEL_KINDS, RULES, ParameterError, check_ranges, load_params

BUILT_IN = ("fashion-mnist", "mnist", "synthetic-mnist", "cifar10")
FAKE = ArmSpec(
    "fake-arm",
    images="fashion-mnist",
    reference="fashion-mnist-h",
    display_name="A fake arm",
    role="descriptive",
    tests_of="fashion-mnist",
    pool_parameter="mnist_pool_size",
    reference_file="fashion-mnist-h/fmh_counts.csv",
    key_fields=("mturk_neither",),
)


@pytest.fixture
def fake_row(monkeypatch: pytest.MonkeyPatch) -> ArmSpec:
    """The table with one extra row, as a new arm would add it (no loader needed to configure it)."""
    monkeypatch.setattr(softlab.arms, "ARM_SPECS", ARM_SPECS + (FAKE,))
    return FAKE


def test_every_built_in_arm_has_one_row_and_every_row_names_things_that_exist():
    from softlab.data.human import HUMAN_FILES
    from softlab.data.images import DATASETS, OPTIONAL_DATASETS

    assert ARMS == known_arms() == BUILT_IN
    assert len({s.name for s in ARM_SPECS}) == len(ARM_SPECS)
    config_fields = {f.name for f in dataclasses.fields(ArmConfig)}
    for s in ARM_SPECS:
        assert s.images in set(DATASETS) | set(OPTIONAL_DATASETS), s.name
        assert s.reference == "generator" or s.reference in REFERENCE_LOADERS, s.name
        assert (s.reference_file in HUMAN_FILES) == (s.reference != "generator"), s.name
        assert s.pool_parameter in RULES, s.name
        assert set(s.key_fields) <= config_fields, s.name
        assert s.teacher_model in ("", *MODEL_KINDS), s.name
        assert s.optional_images == (s.images in OPTIONAL_DATASETS), s.name
    for name in ("default", "smoke", "paper", "stability", "robustness"):
        assert set(load_params(name).get("arms", [])) <= set(ARMS), name
    with pytest.raises(ValueError, match="arms: unknown arm 'kmnist'"):
        arm_spec("kmnist")


def test_claims_file_gives_every_built_in_arm_the_role_its_row_declares():
    claims = load_claims()
    for s in ARM_SPECS:
        rule = claims.rule(s.name)
        assert (rule.role, rule.tests_of) == (s.role, s.tests_of or s.name), s.name
    assert softlab.arms.verdict_arms() == ("fashion-mnist", "synthetic-mnist")


def test_display_and_reference_names_come_from_the_table():
    names = {"fashion-mnist": "Fashion-MNIST-H", "mnist": "MNIST MTurk", "synthetic-mnist": "synthetic MNIST"}
    assert present.ARM_NAMES == softlab.arms.display_names() == {**names, "cifar10": "CIFAR-10H"}
    assert present.arm_name("synthetic-mnist") == "synthetic MNIST" and present.arm_name("my-votes") == "my-votes"
    assert chapter.REFERENCE_NAMES == {"synthetic-mnist": "generator"}
    assert [s.name for s in ARM_SPECS if s.reference_name == "generator"] == ["synthetic-mnist"]


def test_configs_size_each_pool_by_its_rows_parameter_and_give_budgets_only_to_vote_references():
    p = {
        **load_params("smoke"),
        "arms": list(BUILT_IN),
        "pool_size": 11,
        "mnist_pool_size": 22,
        "synthetic_items": 33,
        "votes_per_item": 2,
    }
    arms, _, _ = configs_from_params(p)
    assert {a: c.pool_size for a, c in arms.items()} == {
        "fashion-mnist": 11,
        "mnist": 22,
        "synthetic-mnist": 0,
        "cifar10": 11,
    }
    assert arms["synthetic-mnist"].synthetic["n_items"] == 33 and arms["fashion-mnist"].synthetic == {}
    assert {a: c.votes_per_item for a, c in arms.items()} == {
        "fashion-mnist": 2,
        "mnist": 2,
        "synthetic-mnist": 0,
        "cifar10": 2,
    }
    assert {a: c.image_dataset for a, c in arms.items()} == {a: arm_spec(a).images for a in BUILT_IN}


def test_run_keys_of_the_built_in_arms_are_those_of_before_the_table():
    """The table changed where arm facts live, not any run's key (the cache keeps every run):
    these are the keys computed by the code before the table existed."""
    smoke, _, _ = configs_from_params({**load_params("smoke"), "arms": list(BUILT_IN), "votes_per_item": 2})
    default, _, _ = configs_from_params({**load_params("default"), "arms": list(BUILT_IN)})

    def keys(cfgs: dict[str, ArmConfig]) -> dict[str, str]:
        return {a: config_key({"arm": c.key_dict(), "data": data_versions(c)}) for a, c in cfgs.items()}

    assert keys(smoke) == {
        "fashion-mnist": "15defc73b44cdf03",
        "mnist": "d05d756a9250cbbe",
        "synthetic-mnist": "38794af973573e96",
        "cifar10": "1faba415a44a4f00",
    }
    assert keys(default) == {
        "fashion-mnist": "3926d839a22af02d",
        "mnist": "d4d91af06753c2a8",
        "synthetic-mnist": "a0267a8df5d4ee95",
        "cifar10": "f28b678c7f99ac69",
    }
    assert set(softlab.arms.arm_key_fields()) == {"synthetic", "synthetic_mode_shift", "mturk_neither"}
    assert "synthetic" in smoke["synthetic-mnist"].key_dict() and "synthetic" not in smoke["mnist"].key_dict()
    assert "mturk_neither" in smoke["mnist"].key_dict() and "mturk_neither" not in smoke["cifar10"].key_dict()


def test_a_new_row_is_a_known_arm_to_the_parameter_check_and_the_configs(
    fake_row: ArmSpec, monkeypatch: pytest.MonkeyPatch
):
    check_ranges({"arms": ["fake-arm", "fashion-mnist"]})  # the parameter check looks the table up
    p = {**load_params("smoke"), "arms": ["fake-arm"], "mnist_pool_size": 22, "votes_per_item": 3}
    arms, _, _ = configs_from_params(p)
    cfg = arms["fake-arm"]
    assert cfg.spec == fake_row
    assert (cfg.pool_size, cfg.votes_per_item, cfg.image_dataset) == (22, 3, "fashion-mnist")
    assert "mturk_neither" in cfg.key_dict() and "synthetic" not in cfg.key_dict()  # its own key fields
    assert data_versions(cfg)["human"] == data_versions("fashion-mnist")["human"]  # its reference file's checksum
    without_votes = dataclasses.replace(fake_row, name="fake-no-votes", votes_budgets=False)
    monkeypatch.setattr(softlab.arms, "ARM_SPECS", softlab.arms.ARM_SPECS + (without_votes,))
    with pytest.raises(ValueError, match="votes_per_item / human/sampled: the fake-no-votes arm"):
        ArmConfig("fake-no-votes", votes_per_item=2)


def test_an_arm_without_a_row_is_refused_by_the_parameter_check_and_the_configs():
    with pytest.raises(ParameterError, match="kmnist"):
        check_ranges({"arms": ["kmnist"]})
    with pytest.raises(ValueError, match=r"arms: unknown arm\(s\) \['kmnist'\]"):
        configs_from_params({**load_params("smoke"), "arms": ["kmnist"]})
    with pytest.raises(ValueError, match="dataset: expected one of"):
        ArmConfig("kmnist")
