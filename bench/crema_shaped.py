"""Do the audio head's defaults hold on a CREMA-D-shaped cache? The second half of the trainer
issue's "defaults chosen by measurement" (the first is the Korean set, bench/korean_uar.py).

Builds a synthetic cache with CREMA-D's shape and the difficulties that make real emotion
features hard, then runs bench/korean_uar.py's STUDY candidates on it (the same `study`, the
same speaker-grouped 5-fold split, chosen on validation wF1):

    shape       91 speakers, 6 classes (CREMA-D's), --per-speaker clips each, durations around
                2.6 s (1.3-5 s), 50 Hz frames, 3 layers x 1024 (wav2vec2-large's width, as
                `--audio-layers 12,18,24` caches)
    speakers    a per-speaker offset on every frame, larger than the emotion signal, so a head
                must see past who is talking
    emotion     a per-class direction present on one contiguous span (35-100 % of the clip),
                strongest in the middle layer, with a per-speaker gain: pooling and layer
                weighting both matter
    noise       frame noise with a slow (correlated-in-time) component

It is synthetic: it can show that a default breaks or wins on this shape, not how it does on
real speech. The cache is written once and reused.

    python bench/crema_shaped.py --study defaults,concat,probe --threads 2
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import _common  # noqa: F401 (this checkout's emo on sys.path)

CLASSES = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
SPEAKERS = 91
RATE = 50.0
LAYERS, WIDTH = 3, 1024
LAYER_GAIN = np.array([0.5, 1.0, 0.7], np.float32)  # the emotion signal per layer: middle strongest


def build(path: Path, per_speaker: int, signal: float, seed: int) -> None:
    from emo.cache import CacheWriter
    from emo.clip import Clip

    rng = np.random.default_rng(seed)
    n = SPEAKERS * per_speaker
    speakers = np.repeat(np.arange(SPEAKERS), per_speaker)
    labels = rng.integers(0, len(CLASSES), n)
    seconds = np.clip(rng.normal(2.6, 0.6, n), 1.3, 5.0)
    records = [Clip(id=f"{1001 + speakers[i]}_{i:05d}", label=CLASSES[labels[i]], speaker=str(1001 + speakers[i]),
                    duration=float(seconds[i])) for i in range(n)]
    directions = rng.standard_normal((len(CLASSES), LAYERS, WIDTH)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True) / np.sqrt(WIDTH)  # unit rms per dimension
    speaker_offset = 1.5 * rng.standard_normal((SPEAKERS, LAYERS, WIDTH)).astype(np.float32)
    speaker_gain = rng.uniform(0.5, 1.5, SPEAKERS).astype(np.float32)  # how expressive each speaker is
    with CacheWriter(path, dataset="bench-crema-shaped", clips=records, label_names=CLASSES) as writer:
        writer.open_modality("audio", {"backbone": "synthetic-crema-shaped", "layers": [12, 18, 24], "frame_rate": RATE},
                             (LAYERS, WIDTH), "float16")
        for start in range(0, n, 128):
            batch = {}
            for i in range(start, min(start + 128, n)):
                t = int(seconds[i] * RATE)
                frames = rng.standard_normal((t, LAYERS, WIDTH), dtype=np.float32)
                slow = np.cumsum(rng.standard_normal((t, 1, WIDTH), dtype=np.float32), axis=0) / np.sqrt(np.arange(1, t + 1))[:, None, None]
                span = max(1, int(t * rng.uniform(0.35, 1.0)))
                begin = rng.integers(0, t - span + 1)
                emotion = np.zeros((t, 1, 1), np.float32)
                emotion[begin : begin + span] = signal * speaker_gain[speakers[i]]
                x = frames + 0.5 * slow + speaker_offset[speakers[i]] + emotion * LAYER_GAIN[:, None] * directions[labels[i]]
                batch[records[i].id] = x.astype(np.float16)
            writer.write("audio", batch)


def main() -> None:
    parser = _common.bench_parser(__doc__)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/emo-crema-shaped.h5"), help="built here once, then reused")
    parser.add_argument("--per-speaker", type=int, default=8, help="clips per speaker (CREMA-D has about 82)")
    parser.add_argument("--signal", type=float, default=0.12, help="emotion amplitude against unit frame noise")
    parser.add_argument("--seed", type=int, default=0, help="data, folds and training seed")
    parser.add_argument("--study", default="defaults", help="comma list of bench/korean_uar.py STUDY names")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per configuration")
    _common.add_threads(parser, 2)
    args = parser.parse_args()
    _common.set_threads(args.threads)
    if not args.cache.exists():
        started = time.perf_counter()
        build(args.cache, args.per_speaker, args.signal, args.seed)
        print(f"built {args.cache} ({SPEAKERS * args.per_speaker} clips) in {time.perf_counter() - started:.1f} s", flush=True)
    from korean_uar import STUDY, study

    names = list(STUDY) if args.study == "all" else args.study.split(",")
    study(args.cache, names, args.seed, args.val_fraction, args.log)


if __name__ == "__main__":
    main()
