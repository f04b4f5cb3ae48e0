"""Metrics against independent references (scikit-learn, scipy, naive loops, hand-computed cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, mean_squared_error

from softlab import metrics as M

B = M.DEFAULT_N_BINS


def random_probs(rng: np.random.Generator, shape: tuple[int, ...], conc: float = 0.5) -> np.ndarray:
    *lead, c = shape
    return rng.dirichlet(np.full(c, conc), size=tuple(lead))


# ------------------------------------------------------------------- naive references (loops)


def naive_bin(conf: float, n_bins: int) -> int:
    """Bins [0,1/B], (1/B,2/B], ..., ((B-1)/B, 1] written out with a loop."""
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        if (b == 0 and conf <= hi) or (lo < conf <= hi):
            return b
    return n_bins - 1


def naive_calibration(conf: list[float], hit: list[float], bins: list[int], n_bins: int) -> tuple[float, float]:
    """(ECE, MCE) by an item loop."""
    n = len(conf)
    ece = 0.0
    mce = 0.0
    for b in range(n_bins):
        members = [i for i in range(n) if bins[i] == b]
        if not members:
            continue
        acc = sum(hit[i] for i in members) / len(members)
        mc = sum(conf[i] for i in members) / len(members)
        ece += len(members) / n * abs(acc - mc)
        mce = max(mce, abs(acc - mc))
    return ece, mce


def naive_top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    conf, hit = [], []
    for row, y in zip(probs.tolist(), labels.tolist()):
        best = max(range(len(row)), key=lambda c: (row[c], -c))
        conf.append(row[best])
        hit.append(1.0 if best == y else 0.0)
    return conf, hit


def naive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = B) -> float:
    conf, hit = naive_top_label(probs, labels)
    return naive_calibration(conf, hit, [naive_bin(c, n_bins) for c in conf], n_bins)[0]


def naive_mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = B) -> float:
    conf, hit = naive_top_label(probs, labels)
    return naive_calibration(conf, hit, [naive_bin(c, n_bins) for c in conf], n_bins)[1]


def naive_adaptive_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = B) -> float:
    conf, hit = naive_top_label(probs, labels)
    order = sorted(range(len(conf)), key=lambda i: (conf[i], i))
    bins = [0] * len(conf)
    for b, chunk in enumerate(np.array_split(np.array(order), n_bins)):
        for i in chunk.tolist():
            bins[i] = b
    return naive_calibration(conf, hit, bins, n_bins)[0]


def naive_classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = B) -> float:
    total = 0.0
    n_classes = probs.shape[1]
    for c in range(n_classes):
        conf = probs[:, c].tolist()
        hit = [1.0 if y == c else 0.0 for y in labels.tolist()]
        total += naive_calibration(conf, hit, [naive_bin(x, n_bins) for x in conf], n_bins)[0]
    return total / n_classes


# ------------------------------------------------------------------- against libraries / loops


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    probs = random_probs(rng, (3, 120, 5), conc=0.6)
    labels = rng.integers(0, 5, size=120)
    human = random_probs(rng, (120, 5), conc=0.4)
    return probs, labels, human


def test_accuracy_nll_brier_match_sklearn(sample):
    probs, labels, _ = sample
    acc, nll, brier = M.accuracy(probs, labels), M.nll(probs, labels), M.brier(probs, labels)
    assert acc.shape == nll.shape == brier.shape == (3,)
    onehot = np.eye(5)[labels]
    for r in range(3):
        assert acc[r] == pytest.approx(accuracy_score(labels, probs[r].argmax(1)))
        assert nll[r] == pytest.approx(log_loss(labels, probs[r], labels=range(5)), rel=1e-9)
        assert brier[r] == pytest.approx(5 * mean_squared_error(onehot, probs[r]), rel=1e-9)
        assert brier[r] == pytest.approx(
            brier_score_loss(labels, probs[r], labels=range(5), scale_by_half=False), rel=1e-9
        )


def test_ece_mce_match_naive_loop(sample):
    probs, labels, _ = sample
    e, m = M.ece(probs, labels), M.mce(probs, labels)
    for r in range(3):
        assert e[r] == pytest.approx(naive_ece(probs[r], labels), abs=1e-12)
        assert m[r] == pytest.approx(naive_mce(probs[r], labels), abs=1e-12)
    for n_bins in (1, 4, 10):
        assert M.ece(probs[0], labels, n_bins) == pytest.approx(naive_ece(probs[0], labels, n_bins), abs=1e-12)


def test_adaptive_and_classwise_match_naive_loop(sample):
    probs, labels, _ = sample
    a, cw = M.adaptive_ece(probs, labels), M.classwise_ece(probs, labels)
    for r in range(3):
        assert a[r] == pytest.approx(naive_adaptive_ece(probs[r], labels), abs=1e-12)
        assert cw[r] == pytest.approx(naive_classwise_ece(probs[r], labels), abs=1e-12)
    # fewer items than bins: empty equal-mass bins
    assert M.adaptive_ece(probs[0, :7], labels[:7]) == pytest.approx(
        naive_adaptive_ece(probs[0, :7], labels[:7]), abs=1e-12
    )


def test_reliability_bins_match_sklearn_calibration_curve(sample):
    probs, labels, _ = sample
    rb = M.reliability_bins(probs[1], labels)
    conf = probs[1].max(1)
    hit = (probs[1].argmax(1) == labels).astype(int)
    prob_true, prob_pred = calibration_curve(hit, conf, n_bins=B, strategy="uniform")
    nonempty = rb.count > 0
    np.testing.assert_allclose(rb.accuracy[nonempty], prob_true, atol=1e-12)
    np.testing.assert_allclose(rb.mean_confidence[nonempty], prob_pred, atol=1e-12)
    assert rb.count.sum() == 120
    assert np.all(np.isnan(rb.accuracy[~nonempty]))
    np.testing.assert_allclose(rb.bin_lower, np.arange(B) / B)
    # ECE is the count-weighted gap of these bins
    gap = np.nansum(rb.count * np.abs(rb.accuracy - rb.mean_confidence)) / rb.count.sum()
    assert gap == pytest.approx(float(M.ece(probs[1], labels)), abs=1e-12)


def test_reliability_table_is_tidy(sample):
    probs, labels, _ = sample
    table = M.reliability_table(probs, labels, n_bins=10)
    assert list(table.columns) == ["run", "bin", "bin_lower", "bin_upper", "mean_confidence", "accuracy", "count"]
    assert len(table) == 3 * 10
    assert (table.groupby("run")["count"].sum() == 120).all()


def test_human_alignment_matches_scipy(sample):
    probs, _, human = sample
    kl, js, tv = M.kl_divergence(human, probs), M.js_divergence(human, probs), M.total_variation(human, probs)
    ece_h = M.entropy_calibration_error(human, probs)
    rho = M.entropy_spearman(human, probs)
    for r in range(3):
        assert kl[r] == pytest.approx(scipy_entropy(human, probs[r], axis=1).mean(), rel=1e-9)
        assert js[r] == pytest.approx((jensenshannon(human, probs[r], axis=1) ** 2).mean(), rel=1e-9)
        assert tv[r] == pytest.approx(0.5 * np.abs(human - probs[r]).sum(1).mean(), rel=1e-12)
        h_ent = scipy_entropy(human, axis=1)
        p_ent = scipy_entropy(probs[r], axis=1)
        assert ece_h[r] == pytest.approx(np.abs(p_ent - h_ent).mean(), rel=1e-9)
        assert rho[r] == pytest.approx(spearmanr(p_ent, h_ent).statistic, abs=1e-12)


def test_spearman_by_run_handles_ties_like_scipy():
    x = np.array([[1, 2, 2, 3, 5, 5, 5], [3, 1, 4, 1, 5, 9, 2]], dtype=float)
    y = np.array([2, 2, 1, 4, 4, 6, 0], dtype=float)
    rho = M.spearman_by_run(x, y)
    for r in range(2):
        assert rho[r] == pytest.approx(spearmanr(x[r], y).statistic, abs=1e-12)
    assert np.isnan(M.spearman_by_run(np.ones(5), np.arange(5.0)))
    assert np.isnan(M.spearman_by_run(np.ones(1), np.ones(1)))


def test_human_mode_ties_go_to_official_then_lowest_index():
    h = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.2, 0.3, 0.5], [0.1, 0.45, 0.45]])
    official = np.array([1, 2, 0, 0])
    np.testing.assert_array_equal(M.human_mode(h, official), [1, 0, 2, 1])
    np.testing.assert_array_equal(M.human_mode(h), [0, 0, 2, 1])


def test_human_mode_ece_uses_human_mode_correctness(sample):
    probs, labels, human = sample
    mode = M.human_mode(human, labels)
    np.testing.assert_allclose(M.human_mode_ece(human, probs, labels), M.ece(probs, mode))
    for r in range(3):
        assert float(M.human_mode_ece(human, probs[r], labels)) == pytest.approx(naive_ece(probs[r], mode), abs=1e-12)


def test_metric_suite_equals_single_metric_functions(sample):
    probs, labels, human = sample
    probs = probs.copy()
    probs[0, :5] = np.eye(5)[labels[:5]]  # exact zeros and ones
    suite = M.metric_suite(probs, labels, human, n_bins=12)
    mode = M.human_mode(human, labels)
    single = {
        "accuracy": M.accuracy(probs, labels),
        "nll": M.nll(probs, labels),
        "brier": M.brier(probs, labels),
        "ece": M.ece(probs, labels, 12),
        "adaptive_ece": M.adaptive_ece(probs, labels, 12),
        "mce": M.mce(probs, labels, 12),
        "classwise_ece": M.classwise_ece(probs, labels, 12),
        "accuracy_human_mode": M.accuracy(probs, mode),
        "nll_human_mode": M.nll(probs, mode),
        "ece_human_mode": M.human_mode_ece(human, probs, labels, 12),
        "kl_human": M.kl_divergence(human, probs),
        "js_human": M.js_divergence(human, probs),
        "tv_human": M.total_variation(human, probs),
        "entropy_calibration_error": M.entropy_calibration_error(human, probs),
        "entropy_spearman": M.entropy_spearman(human, probs),
        "debiased_ce": M.debiased_calibration_error(probs, labels, 12),
        "ece_soft": M.soft_ece(probs, human, 12),
        "debiased_ce_soft": M.debiased_soft_calibration_error(probs, human, 12),
    }
    assert set(suite) == set(single) == set(M.OFFICIAL_METRICS) | set(M.HUMAN_METRICS)
    for name, v in single.items():
        np.testing.assert_allclose(suite[name], v, rtol=1e-9, atol=1e-12, err_msg=name)
    assert set(M.metric_suite(probs, labels)) == set(M.OFFICIAL_METRICS)


def test_human_mode_and_entropy_agree_with_the_data_layer():
    annotations = pytest.importorskip("softlab.data.annotations")
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 3, size=(300, 4)).astype(float)  # many ties
    counts[:, 0] += counts.sum(1) == 0
    official = rng.integers(0, 4, size=300)
    soft = counts / counts.sum(1, keepdims=True)
    np.testing.assert_array_equal(M.human_mode(soft, official), annotations.human_mode(counts, official))
    np.testing.assert_allclose(M.entropy(soft), annotations.entropy(soft))


# ------------------------------------------------------------------- hand-computed small cases


def test_hand_computed_case():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    # predictions 0,0,1,1 -> correct 1,0,1,1; conf .9,.6,.7,.8 -> 15 bins: .9->13, .6->8, .7->10, .8->11
    assert float(M.accuracy(probs, labels)) == pytest.approx(0.75)
    assert float(M.nll(probs, labels)) == pytest.approx(
        -(math.log(0.9) + math.log(0.4) + math.log(0.7) + math.log(0.8)) / 4
    )
    assert float(M.brier(probs, labels)) == pytest.approx((0.02 + 0.72 + 0.18 + 0.08) / 4)
    expected_ece = (0.1 + 0.6 + 0.3 + 0.2) / 4
    assert float(M.ece(probs, labels)) == pytest.approx(expected_ece)
    assert float(M.mce(probs, labels)) == pytest.approx(0.6)
    # two equal-width bins: [0, .5] empty; (.5, 1] holds all: acc .75, conf .75 -> ECE 0
    assert float(M.ece(probs, labels, n_bins=2)) == pytest.approx(0.0, abs=1e-12)
    # KL, TV, JS against a one-hot human label
    human = np.eye(2)[labels]
    assert float(M.kl_divergence(human, probs)) == pytest.approx(float(M.nll(probs, labels)))
    assert float(M.total_variation(human, probs)) == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)


def test_bin_edges_confidence_exactly_zero_and_one():
    # confidence exactly 1 lands in the last bin
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    rb = M.reliability_bins(probs, np.array([0, 1]))
    assert rb.count[-1] == 2 and rb.count[:-1].sum() == 0
    assert float(M.ece(probs, np.array([0, 1]))) == pytest.approx(0.5)
    # class-wise: p=0 for class 1 must land in the first bin (dropping it would give 0.5)
    labels = np.array([1, 1])
    assert float(M.classwise_ece(probs, labels)) == pytest.approx(1.0)
    assert float(M.classwise_ece(probs, labels)) == pytest.approx(naive_classwise_ece(probs, labels))
    # a confidence exactly on an inner edge 1/3 goes to the bin it closes: [0,1/3],(1/3,2/3],(2/3,1]
    edge = np.array([[1 / 3, 1 / 3, 1 / 3]])
    rb3 = M.reliability_bins(edge, np.array([0]), n_bins=3)
    np.testing.assert_array_equal(rb3.count, [1, 0, 0])


def test_empty_bins_do_not_produce_nan():
    probs = np.array([[0.95, 0.05]] * 5 + [[0.55, 0.45]] * 5)
    labels = np.array([0] * 5 + [1] * 5)
    for f in (M.ece, M.adaptive_ece, M.mce, M.classwise_ece):
        assert np.isfinite(f(probs, labels))
    assert float(M.ece(probs, labels)) == pytest.approx(0.5 * 0.05 + 0.5 * 0.55)


def test_perfect_predictions():
    labels = np.array([0, 2, 1, 2])
    probs = np.eye(3)[labels]
    s = M.metric_suite(probs, labels, human=probs)
    for name in (
        "nll",
        "brier",
        "ece",
        "adaptive_ece",
        "mce",
        "classwise_ece",
        "kl_human",
        "js_human",
        "tv_human",
        "entropy_calibration_error",
        "ece_human_mode",
        "nll_human_mode",
    ):
        assert float(s[name]) == pytest.approx(0.0, abs=1e-12), name
    assert float(s["accuracy"]) == 1.0 and float(s["accuracy_human_mode"]) == 1.0
    assert np.isnan(s["entropy_spearman"])  # all entropies are 0: undefined, reported as NaN


def test_uniform_predictions():
    n, c = 12, 4
    probs = np.full((n, c), 1 / c)
    labels = np.arange(n) % c
    # argmax of a uniform row is class 0: accuracy 1/4 = confidence -> ECE 0
    assert float(M.accuracy(probs, labels)) == pytest.approx(0.25)
    assert float(M.ece(probs, labels)) == pytest.approx(0.0, abs=1e-12)
    assert float(M.nll(probs, labels)) == pytest.approx(math.log(c))
    assert float(M.brier(probs, labels)) == pytest.approx(1 - 1 / c)
    human = np.eye(c)[labels]
    assert float(M.entropy_calibration_error(human, probs)) == pytest.approx(math.log(c))
    assert float(M.kl_divergence(human, probs)) == pytest.approx(math.log(c))
    biased = np.arange(n) * 0  # all class 0: accuracy 1 at confidence 1/4
    assert float(M.ece(probs, biased)) == pytest.approx(0.75)


def test_single_class():
    probs = np.ones((5, 1))
    labels = np.zeros(5, dtype=int)
    s = M.metric_suite(probs, labels, human=np.ones((5, 1)))
    assert float(s["accuracy"]) == 1.0
    for name in ("nll", "brier", "ece", "adaptive_ece", "mce", "classwise_ece", "kl_human", "js_human", "tv_human"):
        assert float(s[name]) == pytest.approx(0.0, abs=1e-12), name


def test_zero_probability_classes_stay_finite():
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    labels = np.array([2, 0, 2])
    human = np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 0.5], [0.0, 0.0, 1.0]])
    s = M.metric_suite(probs, labels, human)
    for name, v in s.items():
        if name != "entropy_spearman":
            assert np.all(np.isfinite(v)), name
    assert float(s["nll"]) == pytest.approx(-math.log(M.EPS), rel=1e-6)
    assert float(s["js_human"]) <= M.LN2 + 1e-12


def test_shapes_single_run_many_runs_and_extra_axes(sample):
    probs, labels, human = sample
    assert M.ece(probs[0], labels).shape == ()
    assert M.ece(probs, labels).shape == (3,)
    stacked = np.stack([probs, probs[::-1]])  # (2, 3, N, C)
    out = M.metric_suite(stacked, labels, human)
    for name, v in out.items():
        assert v.shape == (2, 3), name
    np.testing.assert_allclose(out["ece"][1], M.ece(probs[::-1], labels))
    # per-run labels
    per_run = np.stack([labels, (labels + 1) % 5, labels])
    np.testing.assert_allclose(M.accuracy(probs, per_run)[1], M.accuracy(probs[1], (labels + 1) % 5))
    # float32 inputs work and agree with float64
    np.testing.assert_allclose(M.ece(probs.astype(np.float32), labels), M.ece(probs, labels), atol=1e-6)


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([[0.5, 0.6]]), np.array([0]), "sums to 1.1; expected probabilities summing to 1"),
        (np.array([[1.5, -0.5]]), np.array([0]), r"\[0, 1\]"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "row 0, column 0: nan is not a probability"),
        (np.array([0.5, 0.5]), np.array([0]), "shape"),
        (np.array([[0.5, 0.5]]), np.array([2]), "labels: entry 0 is 2, outside the class set 0..1"),
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "labels: shape"),
        (np.array([[0.5, 0.5]]), np.array([0.5]), "integer"),
    ],
)
def test_bad_input_raises_clear_error(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        M.ece(probs, labels)


def test_bad_human_and_bins_raise():
    probs = np.array([[0.5, 0.5]])
    with pytest.raises(ValueError, match="human"):
        M.kl_divergence(np.array([[0.2, 0.3, 0.5]]), probs)
    with pytest.raises(ValueError, match="n_bins"):
        M.ece(probs, np.array([0]), n_bins=0)


# ------------------------------------------------------------------- property tests


@st.composite
def prob_stacks(draw):
    runs = draw(st.integers(1, 3))
    items = draw(st.integers(1, 12))
    classes = draw(st.integers(1, 4))
    raw = draw(arrays(np.float64, (runs, items, classes), elements=st.floats(0, 1, allow_nan=False, width=32)))
    raw = np.where(raw < 0.1, 0.0, raw)  # exact zeros are common
    raw[..., 0] += raw.sum(-1) == 0  # never an all-zero row
    probs = raw / raw.sum(-1, keepdims=True)
    labels = draw(arrays(np.int64, (items,), elements=st.integers(0, classes - 1)))
    h_raw = draw(arrays(np.float64, (items, classes), elements=st.floats(0, 1, allow_nan=False, width=32)))
    h_raw = np.where(h_raw < 0.2, 0.0, h_raw)
    h_raw[:, -1] += h_raw.sum(-1) == 0
    human = h_raw / h_raw.sum(-1, keepdims=True)
    return probs, labels, human


@settings(max_examples=50, deadline=None)
@given(prob_stacks())
def test_property_ranges_and_orderings(data):
    probs, labels, human = data
    e, m, a, cw = (
        M.ece(probs, labels),
        M.mce(probs, labels),
        M.adaptive_ece(probs, labels),
        M.classwise_ece(probs, labels),
    )
    for v in (e, m, a, cw):
        assert np.all((v >= 0) & (v <= 1))
    assert np.all(m >= e - 1e-12)
    js_hp, js_ph = M.js_divergence(human, probs), M.js_divergence(probs, human)
    np.testing.assert_allclose(js_hp, js_ph, atol=1e-12)
    assert np.all((js_hp >= 0) & (js_hp <= M.LN2 + 1e-12))
    tv = M.total_variation(human, probs)
    assert np.all((tv >= 0) & (tv <= 1))
    kl = M.kl_divergence(human, probs)
    assert np.all(kl >= 0) and np.all(np.isfinite(kl))
    assert np.all(np.isfinite(M.nll(probs, labels)))


@settings(max_examples=30, deadline=None)
@given(prob_stacks(), st.randoms(use_true_random=False))
def test_property_permuting_runs_permutes_outputs(data, rnd):
    probs, labels, human = data
    perm = list(range(probs.shape[0]))
    rnd.shuffle(perm)
    base = M.metric_suite(probs, labels, human)
    moved = M.metric_suite(probs[perm], labels, human)
    for name in base:
        np.testing.assert_allclose(moved[name], base[name][perm], equal_nan=True, err_msg=name)


# ------------------------------------------------------------------- soft-reference and debiased calibration


def naive_soft_top_label(probs: np.ndarray, reference: np.ndarray) -> tuple[list[float], list[float]]:
    """(confidence, soft correctness h[ŷ]) by an item loop."""
    conf, hit = [], []
    for row, h in zip(probs.tolist(), reference.tolist()):
        best = max(range(len(row)), key=lambda c: (row[c], -c))
        conf.append(row[best])
        hit.append(h[best])
    return conf, hit


def naive_debiased(conf: list[float], hit: list[float], n_bins: int, soft: bool) -> float:
    """Kumar, Liang & Ma (2019) debiased squared L2 calibration error written as their reference code
    does it (bins with fewer than 2 items contribute 0; bin weights n_b/N), with the sample-variance
    bias term for soft correctness."""
    n = len(conf)
    total = 0.0
    for b in range(n_bins):
        members = [i for i in range(n) if naive_bin(conf[i], n_bins) == b]
        if len(members) < 2:
            continue
        gaps = [hit[i] - conf[i] for i in members]
        mean_gap = sum(gaps) / len(gaps)
        if soft:
            var = sum((g - mean_gap) ** 2 for g in gaps) / (len(gaps) - 1)
            bias = var / len(gaps)
        else:
            acc = sum(hit[i] for i in members) / len(members)
            bias = acc * (1 - acc) / (len(members) - 1)
        total += len(members) / n * (mean_gap**2 - bias)
    return total


HAND_PROBS = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.3, 0.7], [0.65, 0.35]])
HAND_LABELS = np.array([0, 1, 0, 0, 1, 1])
HAND_REFERENCE = np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 0.0], [0.7, 0.3], [0.1, 0.9], [0.4, 0.6]])


def test_debiased_and_soft_calibration_hand_computed_case():
    # bins (15 equal-width): conf 0.9 -> (13/15, 14/15] holds items 0-2; 0.65 -> (9/15, 10/15] holds 3, 5;
    # 0.7 -> (10/15, 11/15] holds item 4 alone (no variance estimate: contributes 0, counts in N = 6)
    # label: bin 0.9: acc 2/3, (2/3 - 0.9)^2 - (2/3)(1/3)/2 = 0.0544444 - 0.1111111; weight 3/6
    #        bin 0.65: acc 1/2, (0.5 - 0.65)^2 - 0.25/1 = 0.0225 - 0.25; weight 2/6
    expected_label = 0.5 * (0.0544444444444 - 1 / 9) + (2 / 6) * (0.0225 - 0.25)
    assert float(M.debiased_calibration_error(HAND_PROBS, HAND_LABELS)) == pytest.approx(expected_label, abs=1e-9)
    assert expected_label == pytest.approx(-0.1041666667, abs=1e-9)  # not clipped at 0
    # soft: correctness h[ŷ] = 0.8, 0.5, 1.0 | 0.7, 0.4 | 0.9 (ŷ = 1 for item 4)
    # bin 0.9: d = -0.1, -0.4, 0.1: mean -0.1333, s² = 0.1266667/2, term 0.5 (0.0177778 - 0.0211111)
    # bin 0.65: d = 0.05, -0.25: mean -0.1, s² = 0.045, term (2/6)(0.01 - 0.0225)
    expected_soft = 0.5 * (0.0177777777778 - 0.0211111111111) + (2 / 6) * (0.01 - 0.0225)
    assert float(M.debiased_soft_calibration_error(HAND_PROBS, HAND_REFERENCE)) == pytest.approx(
        expected_soft, abs=1e-9
    )
    # soft ECE: (3/6)|0.766667 - 0.9| + (2/6)|0.55 - 0.65| + (1/6)|0.9 - 0.7| = 0.1333333
    assert float(M.soft_ece(HAND_PROBS, HAND_REFERENCE)) == pytest.approx(0.1333333333, abs=1e-9)


def test_soft_and_debiased_calibration_match_naive_loops(sample):
    probs, labels, human = sample
    soft, dl, ds = (
        M.soft_ece(probs, human),
        M.debiased_calibration_error(probs, labels),
        M.debiased_soft_calibration_error(probs, human),
    )
    assert soft.shape == dl.shape == ds.shape == (3,)
    for r in range(3):
        conf, hit = naive_soft_top_label(probs[r], human)
        assert soft[r] == pytest.approx(naive_calibration(conf, hit, [naive_bin(c, B) for c in conf], B)[0], abs=1e-12)
        assert ds[r] == pytest.approx(naive_debiased(conf, hit, B, soft=True), abs=1e-12)
        conf, hit = naive_top_label(probs[r], labels)
        assert dl[r] == pytest.approx(naive_debiased(conf, hit, B, soft=False), abs=1e-12)
    for n_bins in (1, 4):
        conf, hit = naive_top_label(probs[0], labels)
        assert float(M.debiased_calibration_error(probs[0], labels, n_bins)) == pytest.approx(
            naive_debiased(conf, hit, n_bins, soft=False), abs=1e-12
        )


def test_soft_calibration_with_one_hot_reference_equals_label_calibration(sample):
    probs, labels, _ = sample
    onehot = np.eye(5)[labels]
    np.testing.assert_allclose(M.soft_ece(probs, onehot), M.ece(probs, labels), atol=1e-12)
    # with confidence constant within each bin, s²/n equals Kumar et al.'s acc(1 - acc)/(n - 1)
    const = np.full((40, 2), 0.0)
    const[:20] = [0.9, 0.1]
    const[20:] = [0.3, 0.7]
    y = np.random.default_rng(3).integers(0, 2, 40)
    assert float(M.debiased_soft_calibration_error(const, np.eye(2)[y])) == pytest.approx(
        float(M.debiased_calibration_error(const, y)), abs=1e-12
    )


def test_debiased_estimator_removes_the_plug_in_bias():
    """A calibrated model (outcome probability = confidence) has true calibration error 0: the debiased
    estimator averages to 0 over replications, the plug-in squared error and ECE do not."""
    rng = np.random.default_rng(7)
    runs, items = 3000, 60
    conf = rng.uniform(0.5, 1.0, size=(runs, items))
    probs = np.stack([conf, 1 - conf], axis=-1)
    labels = np.where(rng.random((runs, items)) < conf, 0, 1)
    debiased = M.debiased_calibration_error(probs, labels)
    assert abs(debiased.mean()) < 4 * debiased.std() / np.sqrt(runs)
    assert M.ece(probs, labels).mean() > 0.05
    # soft correctness with mean equal to the confidence (Beta noise): same conclusion
    soft_hit = rng.beta(20 * conf, 20 * (1 - conf))
    reference = np.stack([soft_hit, 1 - soft_hit], axis=-1)
    d_soft = M.debiased_soft_calibration_error(probs, reference)
    assert abs(d_soft.mean()) < 4 * d_soft.std() / np.sqrt(runs)
    assert M.soft_ece(probs, reference).mean() > 0.02


def _subsets(x: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
    return [np.ones(groups.size, bool)] + [groups != j for j in range(groups.max() + 1)]


@pytest.mark.parametrize(
    ("correctness", "estimator", "single"),
    [
        ("label", "ece", M.ece),
        ("label", "debiased", M.debiased_calibration_error),
        ("soft", "ece", M.soft_ece),
        ("soft", "debiased", M.debiased_soft_calibration_error),
    ],
)
def test_calibration_leave_group_out_equals_metric_on_each_subset(sample, correctness, estimator, single):
    probs, labels, human = sample
    target = labels if correctness == "label" else human
    groups = np.random.default_rng(0).permutation(np.arange(120) % 7)
    out = M.calibration_leave_group_out(probs, target, groups, correctness, estimator)
    assert out.shape == (3, 8)
    for col, keep in enumerate(_subsets(probs, groups)):
        np.testing.assert_allclose(out[:, col], single(probs[:, keep], target[keep]), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, (2, n), elements=st.integers(0, 4).map(float)),  # many ties
            arrays(np.float64, (n,), elements=st.integers(0, 3).map(float)),
            st.integers(2, max(2, n // 2)),
            st.randoms(use_true_random=False),
        )
    )
)
def test_spearman_leave_group_out_equals_spearman_by_run_on_each_subset(data):
    x, y, n_groups, rnd = data
    n = y.size
    ids = [i % n_groups for i in range(n)]
    rnd.shuffle(ids)
    groups = np.array(ids)
    out = M.spearman_leave_group_out(x, y, groups)
    assert out.shape == (2, n_groups + 1)
    for col, keep in enumerate(_subsets(x, groups)):
        np.testing.assert_allclose(out[:, col], M.spearman_by_run(x[:, keep], y[keep]), atol=1e-12, equal_nan=True)


def test_leave_group_out_rejects_bad_groups(sample):
    probs, labels, _ = sample
    with pytest.raises(ValueError, match="groups"):
        M.calibration_leave_group_out(probs, labels, np.zeros(120, dtype=int))  # one group
    with pytest.raises(ValueError, match="groups"):
        M.calibration_leave_group_out(probs, labels, np.r_[np.zeros(60, int), np.full(60, 2)])  # group 1 empty
    with pytest.raises(ValueError, match="groups"):
        M.spearman_leave_group_out(np.arange(5.0), np.arange(5.0), np.arange(4))
    with pytest.raises(ValueError, match="estimator"):
        M.calibration_leave_group_out(probs, labels, np.arange(120) % 2, estimator="mce")


# ------------------------------------------------------------------- generator-teacher agreement


def test_agreement_hand_computed() -> None:
    g = np.array([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    p = np.array([[0.2, 0.8, 0.0], [0.1, 0.1, 0.8]])
    out = M.generator_teacher_agreement(g, p)
    # modes: g → [0, 2], p → [1, 2]: one of two agree
    assert out["mode_agreement"] == pytest.approx(0.5)
    # TV: ½(.5 + .5 + 0) = .5 and ½(.1 + .3 + .2) = .3 → mean .4
    assert out["mean_total_variation"] == pytest.approx(0.4)
    # teacher mass on the generator's classes: (.2 + .8) and (.1 + .8) → mean .95
    assert out["support_mass"] == pytest.approx(0.95)
    assert out["n_items"] == 2


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 20), st.integers(0, 10_000))
def test_agreement_properties(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(10), size=n)
    q = rng.dirichlet(np.ones(10), size=n)
    same = M.generator_teacher_agreement(p, p)
    assert same["mode_agreement"] == 1.0 and same["mean_total_variation"] == pytest.approx(0.0, abs=1e-12)
    other = M.generator_teacher_agreement(p, q)
    assert 0.0 <= other["mean_total_variation"] <= 1.0
    assert other["mean_total_variation"] == pytest.approx(M.generator_teacher_agreement(q, p)["mean_total_variation"])


def test_agreement_rejects_mismatched_or_invalid_input() -> None:
    with pytest.raises(ValueError, match="teacher_probs"):
        M.generator_teacher_agreement(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="soft_labels"):
        M.generator_teacher_agreement(np.full((2, 3), 0.5), np.full((2, 3), 1 / 3))
