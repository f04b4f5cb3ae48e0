"""The table of dataset arms: one :class:`ArmSpec` row per built-in arm.

The arm names (:data:`ARMS`), the parameter validation (:mod:`softlab.params`), the run
configurations (:func:`softlab.experiment.configs_from_params`, :class:`softlab.experiment.ArmConfig`),
the book's display names (:data:`softlab.present.ARM_NAMES`) and the reference names of the
condition labels (:mod:`softlab.chapter`) all read from :data:`ARM_SPECS`. The roles in the
verdicts come from ``params/claims.yml`` (``arms:``); each row carries the default role that
file gives the arm, and a test checks that they agree.

A new arm is one row here, plus the loader of its reference in
:data:`softlab.experiment.REFERENCE_LOADERS` (unless it reuses one), plus its test.
Votes arms (the ``votes`` parameter) have no row: they take the images of a human-reference
row (:func:`human_images`) and the reference from their votes table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where an arm's teachers train (:func:`softlab.experiment.prepare_arm`).
TeacherData = Literal["disjoint", "mnist-teacher-half"]


@dataclass(frozen=True)
class ArmSpec:
    """One dataset arm, one line per fact.

    ``name``: the arm's name in every parameter set and table. ``images``: the image data set of
    its pool (:func:`softlab.data.load_images`). ``reference``: where its reference distribution
    comes from — a :func:`softlab.data.load_human` source (``"fashion-mnist-h"``, ``"mnist-mturk"``,
    ``"cifar10h"``) or ``"generator"`` (the synthetic generator's soft labels), the key of
    :data:`softlab.experiment.REFERENCE_LOADERS`. ``reference_file``: the human-label file
    (:data:`softlab.data.human.HUMAN_FILES` key) whose checksum enters every run's key (empty: none).
    ``display_name``: how the book names the arm in prose. ``role``/``tests_of``: the default
    role in the verdicts (``verdict`` or ``descriptive``) and whose claims tests it runs (empty: its
    own), as ``params/claims.yml`` declares them. ``pool_parameter``: the parameter that sizes its
    pool (for the generator arm: the number of generated items). ``teachers``: where its teachers
    train — the disjoint split minus its evaluation sample, or the MNIST training half the
    generator did not see. ``teacher_model``: a teacher architecture forced on any arm whose pool
    is ``images`` (empty: the parameter set's). ``votes_budgets``: whether the annotation budgets
    (``votes_per_item``, ``annotated_fraction``, ``human/sampled``) apply — only to references made
    of votes. ``key_fields``: :class:`~softlab.experiment.ArmConfig` fields that enter the run key
    of this arm only. ``optional_images``: its images may be unavailable here (then the arm is
    skipped with a one-line reason, never an error). ``heldout_items``: what the held-out items
    are, where they are not a sample of the data set (the book says so beside their accuracy and
    adds the accuracy on the disjoint evaluation sample of ordinary test images).
    """

    name: str
    images: str
    reference: str
    display_name: str
    role: Literal["verdict", "descriptive"] = "verdict"
    tests_of: str = ""
    pool_parameter: str = "pool_size"
    teachers: TeacherData = "disjoint"
    teacher_model: str = ""
    votes_budgets: bool = True
    reference_file: str = ""
    key_fields: tuple[str, ...] = ()
    optional_images: bool = False
    heldout_items: str = ""

    @property
    def reference_name(self) -> str:
        """What the book calls the reference: ``generator`` for the generator's labels (never
        "human"), else ``human``."""
        return "generator" if self.reference == "generator" else "human"

    @property
    def generated(self) -> bool:
        """Whether the pool is generated (its size and generator settings enter ``ArmConfig.synthetic``)."""
        return self.reference == "generator"


#: The table of built-in arms, in the order the book shows them.
ARM_SPECS: tuple[ArmSpec, ...] = (
    ArmSpec(
        "fashion-mnist",
        images="fashion-mnist",
        reference="fashion-mnist-h",
        display_name="Fashion-MNIST-H",
        reference_file="fashion-mnist-h/fmh_counts.csv",
    ),
    ArmSpec(
        "mnist",
        images="mnist",
        reference="mnist-mturk",
        display_name="MNIST MTurk",
        role="descriptive",  # 100 pre-selected (suspected-error) items: not a sample
        tests_of="fashion-mnist",
        pool_parameter="mnist_pool_size",
        reference_file="mnist-label-errors/mnist_mturk.json",
        key_fields=("mturk_neither",),
        heldout_items="its 100 suspected label errors",
    ),
    ArmSpec(
        "synthetic-mnist",
        images="mnist",
        reference="generator",
        display_name="synthetic MNIST",
        pool_parameter="synthetic_items",
        teachers="mnist-teacher-half",
        votes_budgets=False,
        key_fields=("synthetic", "synthetic_mode_shift"),
    ),
    ArmSpec(
        "cifar10",
        images="cifar10",
        reference="cifar10h",
        display_name="CIFAR-10H",
        tests_of="fashion-mnist",
        teacher_model="cnn",  # an MLP throws away the spatial structure colour images need
        reference_file="cifar-10h/cifar10h-counts.npy",
        optional_images=True,
    ),
)

#: The names of the built-in arms at import (the ``arms`` parameter's choices). Code that must see
#: a row added later (a test registering one) calls :func:`known_arms`.
ARMS: tuple[str, ...] = tuple(s.name for s in ARM_SPECS)
#: Votes arms (the ``votes`` parameter) are sized like the mnist arm: a labelled subset of a test
#: split, always in the pool, topped up by a stratified subsample of this size.
VOTES_POOL_PARAMETER = "mnist_pool_size"


def known_arms() -> tuple[str, ...]:
    """The names of the rows of :data:`ARM_SPECS`, in table order."""
    return tuple(s.name for s in ARM_SPECS)


def arm_spec(name: str) -> ArmSpec:
    """The row of built-in arm ``name``; a one-line error naming the known arms otherwise."""
    for s in ARM_SPECS:
        if s.name == name:
            return s
    raise ValueError(
        f"arms: unknown arm {name!r}; expected one of {known_arms()} (votes tables: the `votes` parameter)"
    )


def arm_key_fields() -> tuple[str, ...]:
    """Fields of :class:`~softlab.experiment.ArmConfig` that enter the run key of some arms only
    (each row's ``key_fields``)."""
    return tuple(dict.fromkeys(f for s in ARM_SPECS for f in s.key_fields))


def human_images() -> tuple[str, ...]:
    """The image data sets a votes table may label: those of the arms with a human reference."""
    return tuple(dict.fromkeys(s.images for s in ARM_SPECS if s.reference_name == "human"))


def display_names() -> dict[str, str]:
    """Arm name -> the book's name of it in prose."""
    return {s.name: s.display_name for s in ARM_SPECS}


def reference_names() -> dict[str, str]:
    """Arm name -> what its reference is called (``human`` or ``generator``)."""
    return {s.name: s.reference_name for s in ARM_SPECS}


def forced_teacher_model(images: str) -> str:
    """The teacher architecture forced on every arm whose pool is ``images`` (a votes arm on
    CIFAR-10 gets the cifar10 row's CNN); empty when the parameter set's applies."""
    return next((s.teacher_model for s in ARM_SPECS if s.images == images and s.teacher_model), "")


def verdict_arms() -> tuple[str, ...]:
    """The arms that get verdicts from tests of their own (role ``verdict``, ``tests_of`` empty)."""
    return tuple(s.name for s in ARM_SPECS if s.role == "verdict" and not s.tests_of)
