"""Peak memory of `emo fit` on a cache where one clip is far longer than the rest, with the
per-clip frame cap (--max-frames; emo's default is 3000, the bench uses a smaller cap and clip so
that the uncapped fit still fits a shared machine) and without it (every frame, as before the cap).

    python bench/long_clip_memory.py [--long-frames 4000] [--max-frames 1000] [--clips 48]

Each fit runs in its own process (peak RSS = ru_maxrss of that process): audio head
(d_model 64, 2 heads, 1 block), 1 epoch, batch 16, 1 torch thread. Prints peak RSS and wall
seconds per setting and the ratio uncapped / capped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common

ROOT = _common.ROOT

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from emo.fusion import fit
cache, out, max_frames = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
started = time.perf_counter()
fit(cache, head="audio", out=out, epochs=1, batch_size=16, lr=1e-3, quiet=True, max_frames=max_frames,
    head_params={"d_model": 64, "heads": 2, "blocks": 1, "ffn": 128})
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_cache(path: Path, clips: int, long_frames: int) -> None:
    import numpy as np

    from emo.cache import CacheWriter
    from emo.clip import Clip

    rng = np.random.default_rng(0)
    labels = ["angry", "happy", "neutral", "sad"]
    records = [Clip(id=f"c{i:04d}", label=labels[i % 4], speaker=f"s{i % 6}", text="") for i in range(clips)]
    with CacheWriter(path, dataset="bench", clips=records, label_names=labels) as writer:
        writer.open_modality("audio", {"backbone": "bench", "layers": [0]}, (1, 64), "float16")
        sequences = {}
        for i, clip in enumerate(records):
            frames = long_frames if i == 0 else 200  # one 10-minute-like recording among short utterances
            sequences[clip.id] = rng.standard_normal((frames, 1, 64)).astype(np.float16)
        writer.write("audio", sequences)


def main() -> None:
    parser = _common.bench_parser(__doc__, summary_only=True)
    parser.add_argument("--long-frames", type=int, default=4000)
    parser.add_argument("--max-frames", type=int, default=1000)
    parser.add_argument("--clips", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "long.h5"
        make_cache(cache, args.clips, args.long_frames)
        results = {}
        for label, max_frames in ((f"capped (--max-frames {args.max_frames})", args.max_frames), ("uncapped (every frame)", None)):
            out = Path(tmp) / f"run-{max_frames}"
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(cache), str(out), json.dumps(max_frames)],
                cwd=ROOT, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": ""},
            )
            if done.returncode:
                sys.exit(f"{label}: fit failed\n{done.stderr[-2000:]}")
            results[label] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{label:28s} peak RSS {results[label]['peak_rss_mb']:8.0f} MB   {results[label]['seconds']:6.1f} s")
        capped, uncapped = results.values()
        print(f"one {args.long_frames}-frame clip among {args.clips - 1} of 200 frames: uncapped / capped = "
              f"{uncapped['peak_rss_mb'] / capped['peak_rss_mb']:.1f}x memory, {uncapped['seconds'] / capped['seconds']:.1f}x time")


if __name__ == "__main__":
    main()
