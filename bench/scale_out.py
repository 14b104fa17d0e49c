"""Scale-out extraction: clips/s of `emo extract` with 1 process against N torchrun processes.

Each setting runs the real command, `torchrun --standalone --nproc-per-node P -m emo extract
manifest ... --modalities audio` (P = 1 takes the plain one-process path), on the same clips,
into a fresh cache. Reported per setting:
  extract s   the slowest rank's extraction time (decode + encode + write; from the summary table)
  wall s      the whole command: start-up (imports, model load), extraction, rank 0's merge
  clips/s     clips / extract s
The audio encoder is a mid-sized wav2vec2 with random weights built from a config (hidden 256,
4 layers, conv 7 x 256, as in bench/extract_speed.py), heavy enough that encoding dominates;
--large-robust builds the wav2vec2-large-robust architecture instead (for GPUs). Audio: real
Korean wavs when ../shared/data is present, else synthetic noise of 2-8 s.
On the CPU each setting gets the same torch threads in all: OMP_NUM_THREADS = cores // P.

  python bench/scale_out.py --clips 48                           # CPU, 1 vs 2 processes (gloo)
  python bench/scale_out.py --device cuda --nproc 4 --clips 300 --large-robust   # a 4-GPU node
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
from extract_speed import build_model, make_clips  # noqa: E402 (bench/ is not a package)


def write_manifest(clips, path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "speaker", "audio"])
        writer.writerows([c.id, "x", c.speaker, c.audio] for c in clips)
    return path


def extract_seconds(output: str) -> float:
    """The audio row's time cell of the summary table (the slowest rank's extraction)."""
    for line in output.splitlines():
        if re.match(r"\W*audio\s+│", line):
            return float(line.strip("│ ").split("│")[-1].strip().rstrip("s"))
    raise RuntimeError(f"no summary table in the output:\n{output[-3000:]}")


def run(processes: int, manifest: Path, model: Path, cache: Path, device: str, threads: int, batch_s: float):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
        "-m", "emo", "extract", "manifest", str(manifest), "-o", str(cache), "--modalities", "audio",
        "--audio-backbone", str(model), "--device", device, "--batch-seconds", str(batch_s), "--quiet",
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return extract_seconds(done.stdout), wall


def largest_difference(a: Path, b: Path) -> float:
    import numpy as np

    from emo.cache import CacheReader

    first, second = CacheReader(a).load("audio"), CacheReader(b).load("audio")
    other = {cid: second[i] for i, cid in enumerate(second.ids)}
    assert sorted(first.ids) == sorted(other), "the two runs hold different clips"
    return max(float(np.abs(first[i].astype(np.float32) - other[cid].astype(np.float32)).max()) for i, cid in enumerate(first.ids))


def main() -> None:
    parser = _common.bench_parser(__doc__)
    parser.add_argument("--nproc", type=int, default=2, help="processes of the scaled-out run (compared with 1)")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (each rank takes cuda:LOCAL_RANK)")
    parser.add_argument("--large-robust", action="store_true")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the settings this often, keep the best")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's "Writing model shards" bar
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_model(tmp / "model", args.large_robust)
        clips, source = make_clips(args.clips, tmp)
        manifest = write_manifest(clips, tmp / "manifest.csv")
        settings = [1, args.nproc]
        best: dict[int, tuple[float, float]] = {}
        for repeat in range(args.repeats):  # alternating, so load from other processes hits both alike
            for processes in settings:
                cache = tmp / f"cache{processes}.h5"
                cache.unlink(missing_ok=True)
                threads = max(1, cores // processes) if args.device == "cpu" else 1
                seconds, wall = run(processes, manifest, model, cache, args.device, threads, args.batch_seconds)
                if processes not in best or seconds < best[processes][0]:
                    best[processes] = (seconds, wall)
        difference = largest_difference(tmp / "cache1.h5", tmp / f"cache{args.nproc}.h5")

    model_name = "wav2vec2-large-robust architecture" if args.large_robust else "mid wav2vec2 (hidden 256, 4 layers)"
    print(f"model: {model_name}, random weights; device {args.device}; {len(clips)} clips from {source}; {cores} CPU cores")
    print(f"best of {args.repeats}; CPU threads per process = cores // processes")
    print(f"{'processes':>9}{'extract s':>11}{'wall s':>9}{'clips/s':>9}")
    for processes in settings:
        seconds, wall = best[processes]
        print(f"{processes:>9}{seconds:>11.1f}{wall:>9.1f}{len(clips) / seconds:>9.2f}")
    one, many = best[1], best[args.nproc]
    print(f"speed-up with {args.nproc} processes: {one[0] / many[0]:.2f}x extraction, {one[1] / many[1]:.2f}x wall")
    print(f"largest |difference| between the two caches' float16 values: {difference:.4g}")


if __name__ == "__main__":
    main()
