"""Every plot renders to a non-empty PNG with the Agg backend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from softlab import cartography as CA  # noqa: E402
from softlab import evaluation as E  # noqa: E402
from softlab import plots as P  # noqa: E402
from softlab import stats as S  # noqa: E402

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
    summary = S.bootstrap_summary(df[df.metric.isin(["ece", "accuracy"])], by=["condition", "stratum", "metric"], n_boot=50)
    render(P.plot_metric_by_stratum(summary), tmp_path / "strata.png")
    diffs = S.paired_differences(df[df.metric == "ece"], "original/hard", unit=("seed",), n_boot=50)
    render(P.plot_metric_by_stratum(diffs, estimate="difference"), tmp_path / "diffs.png")
    render(P.plot_intervals(diffs[diffs.stratum == "all"]), tmp_path / "forest.png")


def test_seed_spread_plot(records, tmp_path):
    df = E.evaluate_runs(records)
    render(P.plot_seed_spread(df[df.stratum == "all"], metric="accuracy"), tmp_path / "spread.png")
    with pytest.raises(ValueError, match="metric"):
        P.plot_seed_spread(df)
