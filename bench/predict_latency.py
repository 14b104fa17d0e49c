"""Latency of `emo predict` per clip, with model loading timed apart.

Builds what a user has after `emo demo`: generated clips (2 s, drawn face + voice + transcript),
a cache of eGeMAPS (or log-mel) audio, 8 aligned face crops per clip and MiniLM text (the real
bundled all-MiniLM-L6-v2), and a cross-attention head over the three fitted for a few epochs.
Then it times
  load      Predictor(run): the heads, and the run's extractors built and fingerprint-checked
  per clip  predictor.predict([clip.mp4, clip.wav], text) for one clip at a time (video decode,
            face detection + alignment, audio features, text encoder, head), median and p90
  batched   every clip in one predict call, milliseconds per clip
  cold      emo.predict(run, one clip): load + one clip, what a one-off command pays

  python bench/predict_latency.py                    # CPU, about a minute on 2 cores
  python bench/predict_latency.py --audio logmel --clips 40 --device cuda
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path

import numpy as np

import _common


def build_run(root: Path, audio: str, clips_per_cell: int, epochs: int) -> tuple[Path, list[tuple[str, str, str]]]:
    """(run directory, [(mp4, wav, transcript)] of every generated clip)."""
    from emo.demo.synth import make_demo_dataset
    from emo.extract.options import ExtractOptions
    from emo.extract import run_extraction
    from emo.fusion import fit

    manifest = make_demo_dataset(root / "data", clips_per_speaker_emotion=clips_per_cell)
    cache = root / "demo.h5"
    options = ExtractOptions(audio_backbone=audio, text_backbone="minilm", frames=8, face_size=96)
    run_extraction("manifest", manifest, cache, ["audio", "faces", "text"], options, progress=False)
    run = root / "run"
    fit(cache, head="cross_attention", modalities=["audio", "faces", "text"], head_params={"d_model": 64, "ffn": 128},
        epochs=epochs, batch_size=16, lr=1e-3, modality_dropout=0.2, out=run, quiet=True, device="cpu")
    with open(manifest, newline="") as handle:
        media = [(str(manifest.parent / r["video"]), str(manifest.parent / r["audio"]), r["text"])
                 for r in csv.DictReader(handle)]
    return run, media


def main() -> None:
    parser = _common.bench_parser(__doc__)
    parser.add_argument("--audio", default="egemaps", choices=["egemaps", "logmel"], help="built-in audio features")
    parser.add_argument("--clips", type=int, default=24, help="clips timed one at a time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    _common.add_threads(parser)
    args = parser.parse_args()

    import torch

    from emo import predict
    from emo.predictor import Predictor

    _common.set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run, media = build_run(Path(tmp), args.audio, clips_per_cell=max(1, -(-args.clips // 24)), epochs=args.epochs)
        print(f"setup (generate {len(media)} clips, extract, fit): {time.perf_counter() - started:.1f} s")
        media = media[: args.clips]

        tick = time.perf_counter()
        predictor = Predictor(run, device=args.device)
        load_s = time.perf_counter() - tick
        predictor.predict([media[0][0], media[0][1]], media[0][2])  # warm-up: first-call allocations, lazy sessions

        per_clip = []
        for mp4, wav, text in media:
            tick = time.perf_counter()
            [p] = predictor.predict([mp4, wav], text)
            per_clip.append(time.perf_counter() - tick)
            assert p.error is None and not p.missing, p
        tick = time.perf_counter()
        batch = predictor.predict([f for mp4, wav, _ in media for f in (mp4, wav)], [t for _, _, t in media])
        batched_s = time.perf_counter() - tick
        assert len(batch) == len(media)

        tick = time.perf_counter()
        predict(run, [media[1][0], media[1][1]], text=media[1][2], device=args.device)
        cold_s = time.perf_counter() - tick

    ms = np.array(per_clip) * 1000
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, audio {args.audio} + faces (8 frames, 96 px) "
          f"+ text (minilm), cross_attention head, {len(media)} clips of 2.0 s")
    print(f"load (heads + extractors + fingerprint checks): {load_s * 1000:.0f} ms")
    print(f"per clip, one clip per call: median {np.median(ms):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms, "
          f"min {ms.min():.0f} ms, max {ms.max():.0f} ms")
    print(f"batched, {len(media)} clips in one call: {batched_s / len(media) * 1000:.0f} ms per clip")
    print(f"cold emo.predict (load + one clip): {cold_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
