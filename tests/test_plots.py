"""Every plot renders to a non-empty PNG with the Agg backend; figures made for the book's column
keep text at 9 pt or more with no literal escape sequences; colours keep conditions and verdicts
apart; the summary figure's rows link to their chapters in SVG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from softlab import cartography as CA
from softlab import evaluation as E
from softlab import plots as P
from softlab import present as PR

CONDITIONS = [f"{m}/{s}" for m in P.MODE_ORDER for s in P.SHAPE_ORDER]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def render(fig: Figure, path: Path) -> None:
    assert isinstance(fig, Figure)
    fig.savefig(path, format="png", dpi=50)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


@pytest.fixture(scope="module")
def records() -> list[E.RunPredictions]:
    rng = np.random.default_rng(0)
    human = rng.dirichlet(np.full(3, 0.4), size=30)
    official = human.argmax(1)
    recs = []
    for cond in CONDITIONS[:4]:
        for seed in range(3):
            probs = rng.dirichlet(np.ones(3) * 0.5, size=30)
            recs.append(E.RunPredictions("toy", cond, seed, 0, "heldout", probs, np.arange(30), official, human))
    return recs


def test_style_and_colours():
    P.set_style()
    palette = P.condition_palette(CONDITIONS[::-1])
    assert list(palette) == CONDITIONS  # ordered by mode then shape
    assert len(set(palette.values())) == len(CONDITIONS)  # one colour each
    assert P.condition_colour("human/human") == P.SHAPE_COLOURS["human"]
    assert P.condition_colour("original/human") != P.condition_colour("human/human")
    assert P.condition_colour("human/human+ts") == P.condition_colour("human/human")  # +ts twin: same colour


def test_unknown_condition_colour_is_the_same_in_every_process():
    # str hashes change from process to process (PYTHONHASHSEED): a colour picked with hash()
    # would differ between the notebooks of one book; the documented checksum does not
    import os
    import re
    import subprocess
    import sys

    code = "from softlab.plots import condition_colour as c; print(c('weird/thing'), c('original/thing'))"
    root = Path(P.__file__).resolve().parents[1]
    seen = {
        tuple(
            subprocess.run(
                [sys.executable, "-c", code],
                env={**os.environ, "PYTHONHASHSEED": seed},
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        )
        for seed in ("1", "2")
    }
    assert seen == {(P.condition_colour("weird/thing"), P.condition_colour("original/thing"))}
    assert re.fullmatch(r"#[0-9a-f]{6}", P.condition_colour("weird/thing"))
    assert P.condition_colour("weird/thing+ts") == P.condition_colour("weird/thing")  # a +ts twin keeps its colour
    assert P.condition_colour("original/thing") != P.condition_colour("human/thing")  # the original mode is tinted


def test_unknown_shapes_get_a_stable_colour_of_their_own():
    # a votes arm's own shape: picked from the fallback list by a checksum of its name (not hash(),
    # which changes between processes), never the colour of a known shape
    colour = P.condition_colour("human/my-shape")
    assert colour == P._FALLBACK[sum(b"my-shape") % len(P._FALLBACK)]
    assert colour not in {P.condition_colour(f"human/{s}") for s in P.SHAPE_ORDER}


def _lab(hex_colour: str) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour, from the standard formulas."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(hex_colour))
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_lab_reference_values():
    assert _lab("#ffffff") == pytest.approx([100, 0, 0], abs=0.05)
    assert _lab("#ff0000") == pytest.approx([53.24, 80.09, 67.20], abs=0.1)  # published sRGB red


def test_verdict_colours_never_read_as_a_condition_colour():
    conditions = [f"{m}/{s}" for m in P.MODE_ORDER for s in (*P.SHAPE_ORDER, "generator")]
    known = [P.condition_colour(c) for c in conditions] + list(P._FALLBACK)
    for verdict, colour in PR.VERDICT_COLOURS.items():
        nearest = min(np.linalg.norm(_lab(colour) - _lab(c)) for c in known)
        assert nearest >= 20, f"{verdict} {colour} is within ΔE {nearest:.1f} of a condition colour"
    verdicts = list(PR.VERDICT_COLOURS.values())
    assert min(np.linalg.norm(_lab(a) - _lab(b)) for i, a in enumerate(verdicts) for b in verdicts[i + 1 :]) >= 20
    assert set(PR.VERDICT_MARKERS) == set(PR.VERDICT_COLOURS)
    assert len(set(PR.VERDICT_MARKERS.values())) == len(PR.VERDICT_MARKERS)  # shape encodes it too


def legible(fig: Figure) -> None:
    """Every visible text of the figure is at least 9 pt and has no literal escape sequence."""
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_visible() and text.get_text().strip():
            assert text.get_fontsize() >= 9, (text.get_text(), text.get_fontsize())
            assert "\\n" not in text.get_text(), text.get_text()


def test_verdict_forest_keeps_its_panels_wide_with_the_books_long_row_names():
    """The book's rows are named in 50–92 characters ("synthetic MNIST: generator/generator+ts vs
    generator/synthetic+ts (both temperature-scaled)"), longer than the figure is wide: each name
    is wrapped inside its panel, the panels keep the figure's width (they once collapsed to 8% of
    it, the intervals 0.4 in wide), and the figure is drawn at the width it asks for."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    P.set_style()
    long_names = verdict_table().assign(
        label=[
            "synthetic MNIST: generator/generator+ts vs generator/synthetic+ts (both temperature-scaled)",
            "Fashion-MNIST-H: human/human vs human/synthetic (maximum-probability confidence)",
            "A: x vs y",
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied because axes sizes collapsed"
        fig = P.plot_verdicts(long_names, url="url")
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        assert ax.bbox.width >= 0.85 * fig.bbox.width, (ax.get_title(loc="left"), ax.bbox.width, fig.bbox.width)
        for text in ax.texts:
            box = text.get_window_extent(renderer)
            assert ax.bbox.x0 - 1 <= box.x0 and box.x1 <= ax.bbox.x1 + 1, text.get_text()
    assert fig.get_tightbbox(renderer).width <= fig.get_size_inches()[0] + 0.05
    assert any("\n" in t.get_text() for ax in fig.axes for t in ax.texts)  # the long names wrapped


def test_a_figure_drawn_twice_holds_both_layouts_with_ids_apart():
    """SvgFigure(narrow=...): the HTML holds the wide drawing, then the phone's, each an accessible
    SVG named by the same alt text, with no id shared between the two (a clip path of one drawing
    would otherwise clip the other); the PNG is the wide one; without ``narrow`` the markup is as before."""
    import re

    P.set_style()
    wide, narrow = P.plot_verdicts(verdict_table(), url="url"), P.plot_verdicts(verdict_table(), url="url")
    narrow.set_size_inches(4.0, wide.get_size_inches()[1] * 1.5)
    both = P.SvgFigure(wide, alt="Forest plot", salt="forest", narrow=narrow)
    html = both._repr_html_()
    assert html.startswith('<div class="softlab-svg-figure softlab-responsive"><div class="softlab-wide"><svg')
    wide_part, narrow_part = html.split('<div class="softlab-narrow">')
    assert wide_part.count("<svg ") == 1 and narrow_part.count("<svg ") == 1
    assert 'id="forest-narrow"' in narrow_part and 'id="forest"' in wide_part  # each salted by its own name
    for part in (wide_part, narrow_part):
        assert 'role="img"' in part and 'aria-label="Forest plot"' in part
    ids = [re.findall(r' id="([^"]+)"', part) for part in (wide_part, narrow_part)]
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])
    for ref in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', narrow_part):  # what it points at is its own
        assert "".join(ref) in ids[1], ref
    assert re.findall(r"clip-path=", narrow_part)  # (there are references to check)
    widths = [int(re.search(r"width: min\(100%, (\d+)px\)", part).group(1)) for part in (wide_part, narrow_part)]
    assert widths[1] < widths[0]  # each drawing at its own size: the phone's is the narrower
    assert both._repr_png_().startswith(PNG_MAGIC)
    single = P.SvgFigure(P.plot_verdicts(verdict_table(), url="url"), alt="Forest plot", salt="forest")
    again = P.SvgFigure(P.plot_verdicts(verdict_table(), url="url"), alt="Forest plot", salt="forest")
    assert single._repr_html_() == f'<div class="softlab-svg-figure">{again.svg()}</div>'


def test_the_book_css_shows_the_layout_that_fits_the_screen():
    from softlab.paths import PROJECT_ROOT

    css = (PROJECT_ROOT / "book" / "_static" / "softlab.css").read_text()
    assert ".softlab-responsive .softlab-narrow { display: none; }" in css
    phone = css[css.rindex("@media (max-width: 576px)") :]
    assert ".softlab-responsive .softlab-wide { display: none; }" in phone
    assert ".softlab-responsive .softlab-narrow { display: block; }" in phone


def test_reliability_plot(records, tmp_path):
    table = E.reliability_frame(records, n_bins=10)
    fig = P.plot_reliability(table, title="toy")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
    render(fig, tmp_path / "reliability.png")
    with pytest.raises(ValueError, match="missing column"):
        P.plot_reliability(table.drop(columns="count"))


def test_data_map_plot(tmp_path):
    rng = np.random.default_rng(1)
    frames = []
    for cond in CONDITIONS[:3]:
        dyn = rng.dirichlet(np.ones(3), size=(4, 40))
        t = CA.data_map_table(dyn, rng.integers(0, 3, 40), rng.dirichlet(np.ones(3), size=40))
        frames.append(t.assign(condition=cond))
    maps = pd.concat(frames, ignore_index=True)
    fig = P.plot_data_maps(maps, reference="soft", max_points=30)
    render(fig, tmp_path / "maps.png")
    with pytest.raises(ValueError, match="reference"):
        P.plot_data_maps(maps)


def test_metric_by_stratum_plot(records, tmp_path):
    df = E.evaluate_runs(records)
    # mean over seeds with a +-2 SE band: the plot takes any (x, hue, estimate, low, high) table
    by = ["condition", "stratum", "metric"]
    summary = df[df.metric.isin(["ece", "accuracy"])].groupby(by)["value"].agg(["mean", "sem"]).reset_index()
    summary = summary.assign(
        estimate=summary["mean"],
        ci_low=summary["mean"] - 2 * summary["sem"],
        ci_high=summary["mean"] + 2 * summary["sem"],
    )
    render(P.plot_metric_by_stratum(summary), tmp_path / "strata.png")
    diffs = summary[summary.metric == "ece"].rename(columns={"estimate": "difference"})
    render(P.plot_metric_by_stratum(diffs, estimate="difference"), tmp_path / "diffs.png")
    render(P.plot_intervals(diffs[diffs.stratum == "all"]), tmp_path / "forest.png")


def test_seed_spread_plot(records, tmp_path):
    df = E.evaluate_runs(records)
    render(P.plot_seed_spread(df[df.stratum == "all"], metric="accuracy"), tmp_path / "spread.png")
    with pytest.raises(ValueError, match="metric"):
        P.plot_seed_spread(df)


def verdict_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["A: human/human vs human/hard+ts", "A: human/human vs human/synthetic", "A: x vs y"],
            "panel": ["Calibration on hard items", "Stability across seeds", "Confidence follows human uncertainty"],
            "unit": ["calibration error: difference in % of the comparator", "variance: % difference", "ρ: difference"],
            "estimate": [-80.0, 21.0, np.nan],
            "ci_low": [-300.0, -100.0, np.nan],
            "ci_high": [-29.0, 55.0, np.nan],
            "margin": [10.0, 15.0, 0.05],
            "verdict": ["refuted", "inconclusive (n=3 < 10)", "inconclusive"],
            "tooltip": ["claim 1: −80% [−300%, −29%]", "claim 2: +21%", "claim 3: not estimable"],
            "url": ["05_calibration.html#claim-1", "04_training.html#claim-2", "06_cartography.html#claim-3"],
        }
    )


def test_verdict_forest_links_every_row_in_svg(tmp_path):
    P.set_style()
    svg = P.SvgFigure(P.plot_verdicts(verdict_table(), url="url"), alt="Forest plot of the primary tests").svg()
    again = P.SvgFigure(P.plot_verdicts(verdict_table(), url="url"), alt="Forest plot of the primary tests")
    assert again.svg() == svg  # deterministic markup: re-executing a notebook does not change it
    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-label="Forest plot of the primary tests"' in svg
    assert "<title>Forest plot of the primary tests</title>" in svg
    for url in verdict_table()["url"]:
        assert svg.count(f'xlink:href="{url}"') >= 1  # label (and marker, where estimable) link there
    for tip in verdict_table()["tooltip"]:  # every row answers a hover with its numbers
        assert svg.count(f"<title>{tip}</title>") >= 2, tip
    for panel in verdict_table()["panel"]:  # one panel per claim, titled in words
        assert panel in svg
    assert again._repr_png_().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="alt"):
        P.SvgFigure(again.fig, alt=" ")
    fig = P.plot_verdicts(verdict_table(), url="url")
    legible(fig)
    render(fig, tmp_path / "verdicts.png")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in axes] == list(verdict_table()["panel"])
    names = [[t.get_text() for t in ax.texts if t.get_text().startswith("A:")] for ax in axes]
    assert names == [[label] for label in verdict_table()["label"]]  # each row named above its interval
    low, high = axes[0].get_xlim()  # the axis spans the whole interval, in the metric's own units
    assert low <= -300.0 and high >= 10.0 and low == -high


def test_condition_targets_heat_map(tmp_path):
    P.set_style()
    rng = np.random.default_rng(2)
    classes = [f"class {k}" for k in range(5)]
    targets = {c: rng.dirichlet(np.ones(5)) for c in CONDITIONS}
    fig = P.plot_condition_targets(targets, classes, marked={"official": 1, "majority": 3})
    legible(fig)
    render(fig, tmp_path / "targets.png")
    swatch, heat = fig.axes[:2]
    assert [t.get_text() for t in swatch.get_yticklabels()] == P.order_conditions(CONDITIONS)
    names = [t.get_text() for t in heat.get_xticklabels()]
    assert names[1] == "class 1\n(official)" and names[3] == "class 3\n(majority)" and names[0] == "class 0"
    printed = {t.get_text() for t in heat.texts}
    assert f"{targets['human/human'][0]:.2f}".lstrip("0") in printed
    with pytest.raises(ValueError, match="class_names"):
        P.plot_condition_targets(targets, classes[:4])


def test_condition_intervals_one_row_per_condition(tmp_path):
    P.set_style()
    rows = [
        {"dataset": d, "condition": c, "against": a, "estimate": 0.5, "ci_low": 0.4, "ci_high": 0.6}
        for d in ("a", "b")
        for c in CONDITIONS[:4]
        for a in ("official", "reference")
    ]
    fig = P.plot_condition_intervals(
        pd.DataFrame(rows), marker_by="against", xlabel="accuracy", facet_names={"a": "Arm A"}
    )
    legible(fig)
    render(fig, tmp_path / "intervals.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["Arm A", "b"]
    top_down = sorted(panels[0].get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in top_down] == P.order_conditions(CONDITIONS[:4])
    assert fig.get_supxlabel() == "accuracy" and all(ax.get_xlabel() == "" for ax in panels)
    with pytest.raises(ValueError, match="marker_by"):
        P.plot_condition_intervals(pd.DataFrame(rows).assign(against=[0, 1, 2] * 5 + [0]), marker_by="against")


def test_seed_spread_is_one_labelled_row_per_condition(records, tmp_path):
    df = E.evaluate_runs(records)
    fig = P.plot_seed_spread(df[df.stratum == "all"], metric="accuracy", xlabel="held-out accuracy")
    legible(fig)
    ax = fig.axes[0]
    top_down = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in top_down] == P.order_conditions(CONDITIONS[:4])  # first condition on top
    assert ax.get_xlabel() == "held-out accuracy"


def test_chapter_8_draws_the_deliveries_and_verdicts_in_the_books_colours():
    from softlab import plots_robustness as PRB

    assert PRB.DELIVERY_STYLE["soft"]["color"] == P.condition_colour("human/human")
    assert PRB.DELIVERY_STYLE["sampled"]["color"] == P.condition_colour("human/sampled")
    assert P.condition_colour("human/sampled") not in _FALLBACK_AND_KNOWN(exclude="human/sampled")
    assert PRB.VERDICT_COLOURS == PR.VERDICT_COLOURS  # one verdict colour per verdict in the whole book


def _FALLBACK_AND_KNOWN(exclude: str) -> set[str]:
    known = {P.condition_colour(f"{m}/{s}") for m in P.MODE_ORDER for s in (*P.SHAPE_ORDER, "generator")}
    return (known - {P.condition_colour(exclude)}) | set(P._FALLBACK)


def test_row_names_are_display_names_while_colours_follow_the_ids():
    df = pd.DataFrame({"condition": ["human/human"] * 3 + ["human/synthetic"] * 3, "seed": [0, 1, 2] * 2,
                       "value": [0.8, 0.81, 0.79, 0.7, 0.72, 0.71]})  # fmt: skip
    names = {"human/human": "generator/generator", "human/synthetic": "generator/synthetic"}
    ax = P.plot_seed_spread(df, names=names).axes[0]
    top_down = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in top_down] == ["generator/synthetic", "generator/generator"]
    faces = [matplotlib.colors.to_hex(b.get_facecolor()[:3]) for b in ax.patches]
    assert faces == [P.condition_colour("human/synthetic"), P.condition_colour("human/human")]
