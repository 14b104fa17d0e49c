"""Wall time of a 20-trial Optuna search with 1 and 2 workers, against `emo sweep --random 20`.

Builds a synthetic cache with a weak class signal (so learning rate and size matter and some
trials are worth pruning), then runs the same search space three ways, each as real `emo sweep`
processes (imports, cache load, every fit and run directory included):

    random    emo sweep --grid ... --random 20            20 grid points drawn at random, one process
    optuna-1  emo sweep --search optuna --trials 20 --grid ...   TPE + median pruning, one worker
    optuna-2  the same command twice at once on one study (a journal file in --out)

Reported: wall time, trials completed / pruned, the best validation weighted F1 and the test UAR
of that trial, and each wall time as a ratio of the random search's.

    python bench/search_speed.py                     # the BENCHMARKS.md figures
    python bench/search_speed.py --clips 240 --epochs 10 --trials 8   # a quick look
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common

ROOT = _common.ROOT
CLASSES = ["angry", "happy", "neutral", "sad"]
GRID = ["lr=1e-5,3e-5,1e-4,3e-4,1e-3,3e-3", "d_model=32,64,128", "dropout=0.0,0.2,0.4"]  # 54 points


def build(path: Path, clips: int, frames: int, width: int, signal: float, seed: int) -> None:
    from emo.cache import CacheWriter
    from emo.clip import Clip

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), clips)
    lengths = rng.integers(frames // 2, frames * 3 // 2, clips)
    records = [Clip(id=f"c{i:05d}", label=CLASSES[labels[i]], speaker=f"s{i % 12}", duration=lengths[i] / 50.0)
               for i in range(clips)]
    direction = rng.standard_normal((len(CLASSES), width))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    with CacheWriter(path, dataset="bench-search", clips=records, label_names=CLASSES) as writer:
        writer.open_modality("audio", {"backbone": "synthetic", "layers": [0, 1]}, (2, width), "float16")
        writer.write("audio", {
            c.id: (rng.standard_normal((lengths[i], 2, width)) + signal * direction[labels[i]]).astype(np.float16)
            for i, c in enumerate(records)
        })


def command(cache: Path, out: Path, args, optuna: bool) -> list[str]:
    base = [sys.executable, "-m", "emo", "sweep", str(cache), "--head", "audio", "--out", str(out),
            "--epochs", str(args.epochs), "--set", "heads=2", "--set", "blocks=1", "--set", "ffn=128"]
    for item in GRID:
        base += ["--grid", item]
    return base + (["--search", "optuna", "--trials", str(args.trials)] if optuna else ["--random", str(args.trials)])


def run(commands: list[list[str]]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in commands]
    for p in procs:
        output, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"failed: {' '.join(p.args)}\n{output[-2000:]}")
    return time.perf_counter() - started


def summary(out: Path) -> dict:
    """Completed / pruned trials, and the best validation wF1 with that run's test UAR (from run dirs)."""
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    runs = [p.parent for p in out.glob("*/metrics.json")]
    scored = [(json.loads((r / "metrics.json").read_text())) for r in runs]
    best = max(scored, key=lambda m: m["best_val_weighted_f1"])
    # Epochs trained over all trials: the work pruning saves, whatever the machine's load.
    epochs = sum(int(r["epochs"]) for r in rows) if rows and "epochs" in rows[0] else sum(m["epochs_run"] for m in scored)
    return {"completed": len(runs), "pruned": sum(r.get("state") == "pruned" for r in rows),
            "best_val_wf1": best["best_val_weighted_f1"], "test_uar": best["uar"], "epochs": epochs}


def main() -> None:
    parser = _common.bench_parser(__doc__, summary_only=True)
    parser.add_argument("--clips", type=int, default=480)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--signal", type=float, default=0.15)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="emo-search-bench-") as tmp:
        tmp = Path(tmp)
        build(tmp / "cache.h5", args.clips, args.frames, args.width, args.signal, args.seed)
        print(f"cache: {args.clips} clips, audio ~{args.frames} x 2 x {args.width}; head audio, {args.epochs} epochs; "
              f"grid of 54 points; load average {os.getloadavg()[0]:.1f}", flush=True)
        results = {}
        for name, commands in (
            ("random", [command(tmp / "cache.h5", tmp / "random", args, optuna=False)]),
            ("optuna-1", [command(tmp / "cache.h5", tmp / "optuna1", args, optuna=True)]),
            ("optuna-2", [command(tmp / "cache.h5", tmp / "optuna2", args, optuna=True)] * 2),
        ):
            wall = run(commands)
            folder = tmp / {"random": "random", "optuna-1": "optuna1", "optuna-2": "optuna2"}[name]
            results[name] = {"wall_s": wall, **summary(folder)}
            r = results[name]
            print(f"{name:9s} wall {wall:7.1f} s  completed {r['completed']:2d}  pruned {r['pruned']:2d}  epochs {r['epochs']:4d}  "
                  f"best val wF1 {r['best_val_wf1']:.3f}  its test UAR {r['test_uar']:.3f}  "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        base = results["random"]["wall_s"]
        for name in ("optuna-1", "optuna-2"):
            print(f"{name} / random wall time: {results[name]['wall_s'] / base:.2f}")
        print(f"optuna-2 / optuna-1 wall time: {results['optuna-2']['wall_s'] / results['optuna-1']['wall_s']:.2f}")


if __name__ == "__main__":
    main()
