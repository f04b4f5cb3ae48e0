"""Load and durability: 20 concurrent annotators × 50 answers against a real uvicorn server.

Every accepted answer must be stored exactly once (none lost, none doubled, even when a
client retries a submission or repeats an answer), and a restarted server must keep them
all: the export after the restart equals the export before it. Prints the throughput.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from softlab.annotate import StudySettings, annotator_key, annotator_order, create_study, main_annotate  # noqa: E402
from softlab.annotate.app import KEY_HEADER  # noqa: E402
from softlab.annotate.db import AnnotationDB  # noqa: E402
from softlab.annotate.testing import running_server  # noqa: E402

N_ANNOTATORS = 20
N_ITEMS = 50
pytestmark = pytest.mark.slow


def _transport() -> httpx.HTTPTransport:
    """TCP_NODELAY, as browsers use: without it httpx's separate header and body writes of a POST
    wait ~40 ms for the server's delayed ACK (Nagle), and the test would measure that."""
    return httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])


def _annotate_all(base: str, annotator: str, key: str, seed: int, start: threading.Barrier) -> dict[str, object]:
    """One simulated annotator: ask for the first item, answer it, answer the next one named in
    the response, until finished.

    Every 10th answer is sent twice with the same submission id (a retry after a lost
    response: must be stored once) and every 25th is repeated with a new id (must be refused)."""
    rng = np.random.default_rng(seed)
    accepted: list[tuple[int, int]] = []
    shown: list[int] = []
    retried = refused = 0
    with httpx.Client(base_url=base, timeout=60.0, transport=_transport(), headers={KEY_HEADER: key}) as client:
        start.wait(timeout=60)
        first = client.get("/api/next", params={"annotator": annotator})
        first.raise_for_status()
        p = first.json()
        while not p["finished"]:  # like the page: each answer's response names the next item
            item = int(p["item"])
            shown.append(item)
            label = int(rng.integers(0, 10))
            body = {
                "annotator": annotator,
                "item": item,
                "label": label,
                "confidence": int(rng.integers(1, 6)),
                "response_ms": float(rng.integers(200, 3000)),
                "submission_id": f"{annotator}-{item}",
            }
            r = client.post("/api/answers", json=body)
            assert r.status_code == 201, r.text
            accepted.append((item, label))
            p = r.json()["progress"]
            assert p["done"] == len(accepted)
            if len(accepted) % 10 == 0:
                again = client.post("/api/answers", json=body)
                assert again.status_code == 200 and again.json()["repeated_submission"], again.text
                retried += 1
            if len(accepted) % 25 == 0:
                dup = client.post("/api/answers", json={**body, "submission_id": f"{annotator}-{item}-dup", "label": 0})
                assert dup.status_code == 409, dup.text
                refused += 1
    return {"annotator": annotator, "accepted": accepted, "shown": shown, "retried": retried, "refused": refused}


def test_concurrent_annotators_lose_nothing_and_survive_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(80, 28, 28), dtype=np.uint8)
    labels = np.arange(80) % 10
    study = create_study(
        tmp_path / "study",
        images=images,
        labels=labels,
        classes=[str(c) for c in range(10)],
        dataset="user",
        split="test",
        strategy="stratified",
        size=N_ITEMS,
        seed=0,
        settings=StudySettings(),
    )
    annotators = [f"annotator-{k:02d}" for k in range(N_ANNOTATORS)]
    start = threading.Barrier(N_ANNOTATORS + 1)

    with running_server(study.study_dir) as base:
        with ThreadPoolExecutor(max_workers=N_ANNOTATORS) as pool:
            futures = [
                pool.submit(_annotate_all, base, a, annotator_key(study, a), k, start) for k, a in enumerate(annotators)
            ]
            start.wait(timeout=60)
            t0 = time.perf_counter()
            results = [f.result(timeout=240) for f in futures]
            elapsed = time.perf_counter() - t0
        n_accepted = sum(len(r["accepted"]) for r in results)  # type: ignore[arg-type]
        n_requests = sum(len(r["accepted"]) + 1 + int(r["retried"]) + int(r["refused"]) for r in results)  # type: ignore[arg-type,call-overload]
        print(
            f"\nannotate load: {N_ANNOTATORS} annotators x {N_ITEMS} answers = {n_accepted} accepted answers in "
            f"{elapsed:.2f} s -> {n_accepted / elapsed:.0f} answers/s ({n_requests / elapsed:.0f} requests/s)"
        )
        before = tmp_path / "before.csv"
        assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(before)]) == 0

    assert n_accepted == N_ANNOTATORS * N_ITEMS
    for r in results:  # each annotator saw the items in their own seeded order
        assert r["shown"] == annotator_order(study, str(r["annotator"]))
    expected = sorted((str(r["annotator"]), i, lab) for r in results for i, lab in r["accepted"])  # type: ignore[attr-defined]
    with AnnotationDB(study.db_path, study.study_id, allow_reannotation=False) as db:
        stored = sorted((a.annotator, a.item, a.label) for a in db.answers())
        assert stored == expected  # every accepted answer exactly once, with its label; nothing else
        assert db.count() == N_ANNOTATORS * N_ITEMS and db.integrity_ok()

    with running_server(study.study_dir) as base:  # restart on the same folder
        with httpx.Client(base_url=base, timeout=30.0) as client:
            for a in annotators:
                p = client.get(
                    "/api/next", params={"annotator": a}, headers={KEY_HEADER: annotator_key(study, a)}
                ).json()
                assert (p["done"], p["total"], p["finished"]) == (N_ITEMS, N_ITEMS, True)
            dup = client.post(
                "/api/answers",
                json={"annotator": annotators[0], "item": study.items[0], "label": 1, "response_ms": 5.0},
                headers={KEY_HEADER: annotator_key(study, annotators[0])},
            )
            assert dup.status_code == 409
        after = tmp_path / "after.csv"
        assert main_annotate(["export", "--study-dir", str(study.study_dir), "--out", str(after)]) == 0

    assert after.read_bytes() == before.read_bytes()
    table = pd.read_csv(after)
    assert len(table) == N_ANNOTATORS * N_ITEMS
    assert sorted(zip(table["annotator"], table["item"], table["label"])) == expected
