"""The whole loop of issue 14, end to end on loopback: create a study with the annotation app,
answer it through its HTTP API as several *simulated* annotators (each vote drawn from a known
soft label per item), export the votes, run the smoke notebooks with the export as a votes arm,
and check that the arm appears in the metrics and verdict tables and that its reference
distribution is exactly the exported votes' normalised counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from softlab.annotate import annotator_key, main_annotate, open_study  # noqa: E402
from softlab.annotate.app import KEY_HEADER  # noqa: E402
from softlab.annotate.testing import running_server  # noqa: E402
from softlab.data import load_images, read_annotations, soft_labels, to_counts  # noqa: E402

pytestmark = pytest.mark.slow

N_ITEMS = 40
SIMULATED_ANNOTATORS = [f"simulated-{k}" for k in range(6)]
ARM = "simulated-votes"


def simulated_soft_label(official: int, item: int) -> np.ndarray:
    """The known soft label a simulated annotator draws from: mostly the official class, some
    mass on its neighbour, a little everywhere (item-specific, seeded by the item)."""
    rng = np.random.default_rng(item)
    p = np.full(10, 0.02)
    p[official] += 0.55 + 0.2 * rng.random()
    p[(official + 1 + item % 3) % 10] += 0.25
    return p / p.sum()


def simulated_annotator(base: str, name: str, key: str, labels: np.ndarray, seed: int) -> int:
    """Answer every item the server hands out, each label drawn from the item's soft label."""
    rng = np.random.default_rng(seed)
    answered = 0
    with httpx.Client(base_url=base, timeout=60.0, headers={KEY_HEADER: key}) as client:
        progress = client.get("/api/next", params={"annotator": name}).json()
        while not progress["finished"]:
            item = int(progress["item"])
            label = int(rng.choice(10, p=simulated_soft_label(int(labels[item]), item)))
            r = client.post(
                "/api/answers",
                json={
                    "annotator": name,
                    "item": item,
                    "label": label,
                    "response_ms": 500.0,
                    "submission_id": f"{name}-{item}",
                },
            )
            assert r.status_code == 201, r.text
            answered += 1
            progress = r.json()["progress"]
    return answered


def test_study_answered_exported_and_run_as_an_arm(tmp_path, monkeypatch):
    study_dir = tmp_path / "study"
    labels = load_images("mnist", "test").labels
    with running_server(
        study_dir, ["--dataset", "mnist", "--size", str(N_ITEMS), "--strategy", "random", "--seed", "3"]
    ) as base:
        study = open_study(study_dir)
        answered = [
            simulated_annotator(base.split("?")[0], a, annotator_key(study, a), labels, seed=k)
            for k, a in enumerate(SIMULATED_ANNOTATORS)
        ]
    assert answered == [N_ITEMS] * len(SIMULATED_ANNOTATORS)
    votes = tmp_path / "votes.csv"
    assert main_annotate(["export", "--study-dir", str(study_dir), "--out", str(votes)]) == 0
    table = read_annotations(votes)
    assert len(table) == N_ITEMS * len(SIMULATED_ANNOTATORS)

    # the smoke notebooks with the export as an extra arm (own cache and results folders)
    monkeypatch.setenv("SOFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOFTLAB_RESULTS_DIR", str(tmp_path / "results"))
    from softlab.pipeline import run_notebooks

    out = tmp_path / "book"
    run_notebooks(
        "smoke", overrides={"votes": f"{{{ARM}: {{path: {votes}, images: mnist}}}}"}, out_dir=out, progress=False
    )
    assert sorted(p.name for p in out.glob("0*.ipynb")) == [p.name for p in sorted(out.glob("0*.ipynb"))]

    metrics = pd.read_parquet(tmp_path / "results" / "smoke" / "metrics.parquet")
    verdicts = pd.read_parquet(tmp_path / "results" / "smoke" / "verdicts.parquet")
    mine = metrics[metrics["dataset"] == ARM]
    assert len(mine) and set(mine["split"]) == {"heldout", "disjoint"}
    held = mine[(mine["split"] == "heldout") & (mine["metric"] == "n_items") & (mine["stratum"] == "all")]
    assert set(held["value"]) == {float(N_ITEMS)}
    assert (verdicts["arm"] == ARM).any()
    assert (verdicts.loc[verdicts["arm"] == ARM, "verdict"] != "descriptive").any()  # votes arms get verdict rows

    # its reference distribution is the exported votes' normalised counts, item by item
    from softlab.params import load_params
    from softlab.report import book_results

    params = {**load_params("smoke"), "votes": {ARM: {"path": str(votes), "images": "mnist"}}}
    preds = book_results(params).predictions[ARM]
    items, counts = to_counts(table, n_classes=10)
    order = np.argsort(items)
    np.testing.assert_allclose(preds.reference, soft_labels(counts)[order], rtol=0, atol=1e-12)
    # and every chapter shows the arm under its own name
    for nb in ("01_data_annotation", "04_training", "05_calibration", "07_findings"):
        assert ARM in (out / f"{nb}.ipynb").read_text()
