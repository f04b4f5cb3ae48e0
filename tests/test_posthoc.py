"""Post-hoc temperature scaling: the fitted T minimises the calibration cross-entropy (checked
against a brute-force grid), recovers a known temperature, and leaves argmax unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from softlab.posthoc import apply_temperature, fit_official_temperature, fit_temperature_scaling, scaled_cross_entropy


def _calibrated_problem(n=4000, c=5, seed=0):
    """Logits z; labels drawn from softmax(z): the true temperature is 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, c))
    p = softmax(z, axis=1)
    y = np.array([rng.choice(c, p=row) for row in p])
    return z, np.eye(c)[y]


def test_recovers_the_temperature_of_an_overconfident_model():
    z, ref = _calibrated_problem()
    overconfident = softmax(2.5 * z, axis=1)  # logits scaled by 2.5: T* should be ≈ 2.5
    t = fit_temperature_scaling(overconfident, ref)
    assert t == pytest.approx(2.5, rel=0.1)
    assert fit_temperature_scaling(softmax(z, axis=1), ref) == pytest.approx(1.0, rel=0.1)


def test_fitted_temperature_is_the_grid_minimum_and_soft_references_work():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.3), 300)
    ref = 0.8 * apply_temperature(probs, 3.0) + 0.2 * rng.dirichlet(np.ones(4), 300)  # soft, T* ≈ 3 inside the bounds
    t = fit_temperature_scaling(probs, ref)
    assert 1.5 < t < 6
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    losses = [scaled_cross_entropy(probs, ref, g) for g in grid]
    assert scaled_cross_entropy(probs, ref, t) <= min(losses) + 1e-8
    assert t == pytest.approx(grid[int(np.argmin(losses))], rel=5e-3)


def test_scaling_keeps_argmax_and_rows_sum_to_one():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(10), 50).astype(np.float32)
    for t in (0.3, 1.0, 4.0):
        out = apply_temperature(probs, t)
        np.testing.assert_array_equal(out.argmax(1), probs.argmax(1))
        np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-6)


def test_degenerate_inputs():
    assert fit_temperature_scaling(np.empty((0, 3)), np.empty((0, 3))) == 1.0
    assert fit_temperature_scaling(np.full((4, 3), np.nan), np.eye(3)[[0, 1, 2, 0]]) == 1.0
    with pytest.raises(ValueError, match="equal shapes"):
        fit_temperature_scaling(np.ones((4, 3)) / 3, np.ones((4, 2)) / 2)


def test_official_temperature_is_fitted_on_the_one_hot_labels_alone():
    z, ref = _calibrated_problem(seed=3)
    labels = ref.argmax(1)
    overconfident = softmax(2.5 * z, axis=1)
    t = fit_official_temperature(overconfident, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    assert t == fit_temperature_scaling(overconfident, np.eye(5)[labels])


@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([0, 1, 5]), r"official: expected integer labels in \[0, 3\)"),
        (np.array([0.0, 1.0, 2.0]), "official: expected integer labels"),
        (np.array([[0, 1, 2]]), "expected shapes"),
    ],
)
def test_official_temperature_refuses_what_is_not_a_label(labels, match):
    with pytest.raises(ValueError, match=match):
        fit_official_temperature(np.full((3, 3), 1 / 3), labels)
