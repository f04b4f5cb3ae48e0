"""Throughput of the annotation server: N concurrent annotators answering every item.

Starts a real uvicorn server (subprocess, 127.0.0.1, free port) on a throwaway study built
from random images, lets ``--annotators`` client threads each answer ``--items`` items (first
item from ``GET /api/next``, each next item from the answer's response, as the page does),
and prints answers/s and latency percentiles. Checks that every answer was stored once.

    python benchmarks/bench_annotate_load.py --annotators 20 --items 50
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from softlab.annotate import StudySettings, annotator_key, create_study
from softlab.annotate.app import KEY_HEADER
from softlab.annotate.testing import running_server


def annotate(base: str, annotator: str, key: str, barrier: threading.Barrier) -> list[float]:
    """Answer every item as the holder of ``annotator``'s personal link (``key``); return each
    POST's latency in seconds."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    latencies = []
    with httpx.Client(base_url=base, timeout=60.0, transport=transport, headers={KEY_HEADER: key}) as client:
        barrier.wait()
        p = client.get("/api/next", params={"annotator": annotator}).json()
        while not p["finished"]:
            t = time.perf_counter()
            r = client.post(
                "/api/answers",
                json={
                    "annotator": annotator,
                    "item": p["item"],
                    "label": p["item"] % 10,
                    "confidence": 3,
                    "response_ms": 800.0,
                },
            )
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            p = r.json()["progress"]
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--items", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_images = max(2 * args.items, 20)
    with tempfile.TemporaryDirectory() as tmp:
        study = create_study(
            Path(tmp) / "study",
            images=rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8),
            labels=np.arange(n_images) % 10,
            classes=[str(c) for c in range(10)],
            dataset="user",
            split="test",
            strategy="stratified",
            size=args.items,
            seed=0,
            settings=StudySettings(),
        )
        barrier = threading.Barrier(args.annotators + 1)
        with running_server(study.study_dir) as base, ThreadPoolExecutor(args.annotators) as pool:
            futures = [
                pool.submit(annotate, base, f"a{k}", annotator_key(study, f"a{k}"), barrier)
                for k in range(args.annotators)
            ]
            barrier.wait()
            t0 = time.perf_counter()
            latencies = np.concatenate([f.result() for f in futures])
            elapsed = time.perf_counter() - t0
        with sqlite3.connect(study.db_path) as conn:
            stored = conn.execute("SELECT COUNT(*), COUNT(DISTINCT annotator || '/' || item) FROM answers").fetchone()
    n = args.annotators * args.items
    assert stored == (n, n), f"stored {stored}, expected {n} distinct answers"
    p50, p95, p99 = np.percentile(latencies * 1000, [50, 95, 99])
    print(
        f"annotators={args.annotators} items={args.items} answers={n} time={elapsed:.2f}s "
        f"throughput={n / elapsed:.0f} answers/s  POST latency p50={p50:.1f}ms p95={p95:.1f}ms p99={p99:.1f}ms"
    )


if __name__ == "__main__":
    main()
