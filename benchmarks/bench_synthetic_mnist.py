"""Benchmark and quality check of the synthetic MNIST generator.

Prints: generator training time, time to generate ``--n-items`` items, teacher training time,
peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after each phase, and
the agreement of an MNIST teacher with the generator labels (overall and by ambiguity band
``|w − 0.5|``). By default everything runs in a fresh temporary cache, so training is timed;
``--reuse-cache`` uses the real cache (``softlab.paths.cache_dir()``) instead.

    .venv/bin/python benchmarks/bench_synthetic_mnist.py                 # default configs, 2000 items
    .venv/bin/python benchmarks/bench_synthetic_mnist.py --config tiny   # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=("default", "tiny"), default="default")
    ap.add_argument("--n-items", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default $SOFTLAB_TORCH_THREADS or 1)")
    ap.add_argument("--reuse-cache", action="store_true", help="use the real cache instead of a fresh temporary one")
    args = ap.parse_args(argv)
    if args.threads is not None:
        os.environ["SOFTLAB_TORCH_THREADS"] = str(args.threads)
    tmp = None
    if not args.reuse_cache:
        tmp = tempfile.TemporaryDirectory(prefix="softlab-bench-")
        os.environ["SOFTLAB_CACHE_DIR"] = tmp.name

    from softlab.data import load_images
    from softlab.generator import SyntheticMnistConfig, generate_synthetic_mnist, train_generator
    from softlab.metrics import generator_teacher_agreement
    from softlab.teachers import TeacherConfig, teacher_probs, teacher_probs_on, train_teacher

    if args.config == "tiny":
        cfg = SyntheticMnistConfig.tiny(n_items=args.n_items, seed=args.seed)
        tcfg = TeacherConfig.tiny()
    else:
        cfg = SyntheticMnistConfig(n_items=args.n_items, seed=args.seed)
        tcfg = TeacherConfig()
    load_images("mnist", "train")
    out: dict = {
        "config": args.config,
        "n_items": cfg.n_items,
        "generator_key": cfg.generator_key(),
        "dataset_key": cfg.dataset_key(),
        "teacher_key": tcfg.key(),
        "torch_threads": int(os.environ.get("SOFTLAB_TORCH_THREADS", "1")),
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg()[0],
        "peak_rss_mib_after_load": peak_rss_mib(),
    }

    t0 = time.perf_counter()
    gen = train_generator(cfg, progress=True)
    out["generator_train_s"] = time.perf_counter() - t0
    out["generator_from_cache"] = gen.from_cache
    out["generator_loss_per_epoch"] = [round(x, 2) for x in gen.meta.get("loss_per_epoch", [])]
    out["peak_rss_mib_after_generator"] = peak_rss_mib()

    t0 = time.perf_counter()
    ds = generate_synthetic_mnist(cfg, progress=True)
    out["generate_s"] = time.perf_counter() - t0
    out["generated_from_cache"] = ds.from_cache
    out["peak_rss_mib_after_generate"] = peak_rss_mib()

    t0 = time.perf_counter()
    teacher = train_teacher("mnist", tcfg, progress=True)
    out["teacher_train_s"] = time.perf_counter() - t0
    out["teacher_from_cache"] = teacher.from_cache
    test = load_images("mnist", "test")
    out["teacher_mnist_test_accuracy"] = float(np.mean(teacher_probs("mnist", "test", tcfg).argmax(1) == test.labels))

    probs = teacher_probs_on(ds.images, tcfg)
    out["agreement"] = generator_teacher_agreement(ds.soft_labels, probs)
    ambiguity = np.abs(ds.weights.astype(np.float64) - 0.5)
    bands = {}
    for lo, hi in ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5 + 1e-9)):
        sel = (ambiguity >= lo) & (ambiguity < hi)
        if sel.any():
            bands[f"|w-0.5| in [{lo:.1f},{min(hi, 0.5):.1f}]"] = generator_teacher_agreement(
                ds.soft_labels[sel], probs[sel]
            )
    out["agreement_by_band"] = bands
    out["teacher_top_in_pair"] = float(np.mean(np.any(probs.argmax(1)[:, None] == ds.pairs, axis=1)))
    out["peak_rss_mib_end"] = peak_rss_mib()
    out["load_average_end"] = os.getloadavg()[0]

    print(json.dumps(out, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return out


if __name__ == "__main__":
    main()
