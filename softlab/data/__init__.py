"""Data layer: verified images, public human labels, annotation tables.

>>> from softlab.data import load_images, load_human
>>> test = load_images("fashion-mnist", "test")       # doctest: +SKIP
>>> fmh = load_human("fashion-mnist-h")               # doctest: +SKIP
"""

from softlab.data.annotations import (
    AnnotationError,
    entropy,
    fleiss_kappa,
    from_counts,
    human_mode,
    majority,
    mode_shifted,
    read_annotations,
    soft_labels,
    summarise,
    to_counts,
    validate_annotations,
    validate_counts,
    votes_per_item,
)
from softlab.data.cifar import DataUnavailable, load_cifar10
from softlab.data.human import HumanLabels, load_cifar10h, load_human, load_mnist_cleanlab_probs
from softlab.data.images import ChecksumError, DataError, ImageSet, fetch, load_images
from softlab.data.votes import AgreementSummary, agreement, load_votes, read_votes

__all__ = [
    "AgreementSummary",
    "AnnotationError",
    "ChecksumError",
    "DataError",
    "DataUnavailable",
    "HumanLabels",
    "ImageSet",
    "agreement",
    "entropy",
    "fetch",
    "fleiss_kappa",
    "from_counts",
    "human_mode",
    "load_cifar10",
    "load_cifar10h",
    "load_human",
    "load_images",
    "load_mnist_cleanlab_probs",
    "load_votes",
    "majority",
    "mode_shifted",
    "read_annotations",
    "read_votes",
    "soft_labels",
    "summarise",
    "to_counts",
    "validate_annotations",
    "validate_counts",
    "votes_per_item",
]
