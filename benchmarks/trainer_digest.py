"""SHA-256 digests of what ``train_members`` returns for a small fixed grid (MLP and CNN).

Run it on two checkouts (``PYTHONPATH=<tree> python benchmarks/trainer_digest.py``) and compare the
lines: equal digests mean byte-identical trained numbers (probabilities, dynamics, losses and
weights). Used to show that a trainer change leaves the default float32 path unchanged.

    python benchmarks/trainer_digest.py [--models mlp cnn] [--precision float32]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

if "PYTHONPATH" not in os.environ:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch


def grid_digest(kind: str, **train_kwargs: object) -> str:
    from softlab.models import ModelConfig
    from softlab.train import Member, TrainConfig, train_members

    rng = np.random.default_rng(7)
    n = 384
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    targets = rng.dirichlet(np.ones(10) * 0.5, size=n).astype(np.float32)
    members = []
    for seed in range(3):
        for fold in range(2):
            idx = np.sort(rng.choice(n, size=256, replace=False))
            watch = np.setdiff1d(np.arange(n), idx)[:64]
            members.append(Member(seed=seed, targets=targets, train_idx=idx, name=f"s{seed}f{fold}", watch_idx=watch))
    cfg = TrainConfig(ModelConfig(kind, dropout=0.1), epochs=2, batch_size=64, device="cpu", **train_kwargs)  # type: ignore[arg-type]
    results = train_members(x, members, cfg, eval_sets={"test": x[:50]}, progress=False, keep_params=True)
    h = hashlib.sha256()
    for r in results:
        arrays = [r.eval_probs["test"], r.train_loss, r.watch_probs, r.watch_dynamics, r.dynamics]
        arrays += [r.params[k] for k in sorted(r.params or {})]
        for a in arrays:
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for kind in args.models:
        print(f"{kind} {grid_digest(kind)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
