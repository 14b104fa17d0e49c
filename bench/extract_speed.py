"""Audio extraction speed: length-grouped batches against a one-clip-at-a-time loop.

Same AudioExtractor, same prepared clips, two ways of calling `encode`; prints clips/s and the
real-time factor (compute seconds per second of audio, lower is faster), plus peak GPU memory
on CUDA. Models have random weights built from a config (no pretrained weights are needed to
time an architecture):
  default         a mid-sized wav2vec2 (hidden 256, 4 layers, conv 7 x 256), fine on a laptop CPU
  --large-robust  the facebook/wav2vec2-large-robust architecture (hidden 1024, 24 layers,
                  16 heads, FFN 4096, conv 7 x 512, layer-norm feature encoder, stable layer norm)
Audio: the real Korean wavs (22.05 kHz, resampled like any clip) when ../shared/data is present,
otherwise synthetic noise of 2-8 s.

  --whisper NAME  a Whisper encoder (a built-in such as whisper-base with its real weights, or a
                  folder), timed in each --whisper-inputs mode: cut (the clip's own frames) and
                  pad30 (every clip padded to 30 s); RTF is against the clip's real seconds

  python bench/extract_speed.py --clips 16                      # CPU, a few minutes on 2 cores
  python bench/extract_speed.py --large-robust --device cuda --clips 200 --budget-s 240
  python bench/extract_speed.py --whisper whisper-base --clips 16 --threads 1
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import _common

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_model(folder: Path, large_robust: bool) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    if large_robust:
        size = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                    conv_dim=(512,) * 7, num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16)
    else:
        size = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                    conv_dim=(256,) * 7, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16)
    config = Wav2Vec2Config(
        **size,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def make_clips(count: int, folder: Path):
    """Clip records pointing at real Korean wavs, or at synthetic wavs written to `folder`."""
    import soundfile as sf

    from emo.clip import Clip

    wavs = sorted((SHARED_DATA / "kor_emotiontts").glob("*/*/wav/*.wav")) if SHARED_DATA.is_dir() else []
    if wavs:
        step = max(1, len(wavs) // count)  # spread over speakers and emotions
        clips = [Clip(id=p.stem, label="", speaker=p.stem[:3], audio=str(p)) for p in wavs[::step][:count]]
        return clips, "Korean wavs"
    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        path = folder / f"synthetic{i:04d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(rng.uniform(2, 8) * 16000))).astype(np.float32), 16000)
        clips.append(Clip(id=path.stem, label="", speaker="x", audio=str(path)))
    return clips, "synthetic noise"


def length_batches(prepared, cost, budget_s: float):
    """What the runner does: sort by length, fill batches up to a budget of audio seconds."""
    order = sorted(range(len(prepared)), key=lambda i: cost(prepared[i]))
    batches, current, used = [], [], 0.0
    for i in order:
        if current and used + cost(prepared[i]) > budget_s:
            batches.append(current)
            current, used = [], 0.0
        current.append(i)
        used += cost(prepared[i])
    if current:
        batches.append(current)
    return batches


def timed(extractor, calls, sync):
    import torch

    if extractor.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    frames = sum(out.shape[0] for batch in calls for out in extractor.encode(batch))
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if extractor.device.type == "cuda" else float("nan")
    return elapsed, frames, peak


def main() -> None:
    parser = _common.bench_parser(__doc__)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--budget-s", type=float, default=60.0, help="audio seconds per batch")
    parser.add_argument("--large-robust", action="store_true")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--layers", default="last")
    _common.add_threads(parser, 0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two modes this often, keep the best")
    parser.add_argument("--whisper", default=None, help="time this Whisper encoder instead (e.g. whisper-base)")
    parser.add_argument("--whisper-inputs", default="cut,pad30", help="Whisper input modes to time")
    args = parser.parse_args()
    if args.whisper:
        for mode in args.whisper_inputs.split(","):
            run_whisper(args, mode.strip())
        return
    run_wav2vec2(args)


def run_whisper(args, mode: str) -> None:
    from emo.extract.encoders.audio_backbones import make_audio_extractor

    _common.set_threads(args.threads)
    started = time.perf_counter()
    extractor = make_audio_extractor(args.whisper, layers=args.layers, device=args.device, input_mode=mode)
    setup_s = time.perf_counter() - started
    params = sum(p.numel() for p in extractor.encoder.parameters()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        clips, source = make_clips(args.clips, Path(tmp))
        started = time.perf_counter()
        prepared = [extractor.prepare(clip) for clip in clips]
        prepare_s = time.perf_counter() - started
    seconds = lambda p: p.seconds  # noqa: E731  (the clip's real audio, whatever the mode pads)
    model = f"{args.whisper} encoder ({params:.0f}M params), input={mode}"
    measure(args, extractor, prepared, seconds, extractor.cost, model, source, prepare_s, setup_s,
            "decode+resample+log-mel")


def run_wav2vec2(args) -> None:
    from emo.extract.encoders.audio_hf import AudioExtractor

    _common.set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        folder = build_model(tmp / "model", args.large_robust)
        extractor = AudioExtractor(str(folder), layers=args.layers, device=args.device)
        setup_s = time.perf_counter() - started
        clips, source = make_clips(args.clips, tmp)
        started = time.perf_counter()
        prepared = [extractor.prepare(clip) for clip in clips]
        prepare_s = time.perf_counter() - started
    params = sum(p.numel() for p in extractor.model.parameters()) / 1e6
    model = "wav2vec2-large-robust architecture" if args.large_robust else "mid wav2vec2"
    model = f"{model} ({params:.0f}M params, random weights)"
    measure(args, extractor, prepared, extractor.cost, extractor.cost, model, source, prepare_s, setup_s,
            "decode+resample+normalise")


def measure(args, extractor, prepared, seconds, cost, model, source, prepare_s, setup_s, prepare_what) -> None:
    """Time per-clip calls against the runner's length-sorted batches (budget in `cost` units) and print."""
    import torch

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    audio_s = sum(seconds(p) for p in prepared)
    batches = [[prepared[i] for i in batch] for batch in length_batches(prepared, cost, args.budget_s)]
    extractor.encode([prepared[0]])  # warm-up: allocator, kernels, autocast caches
    sync()

    modes = {"per-clip loop": [[p] for p in prepared], f"batched ({len(batches)} batches)": batches}
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeats):  # alternating, so load from other processes hits both modes alike
        for name, calls in modes.items():
            elapsed, _frames, peak = timed(extractor, calls, sync)
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, peak)
    rows = [(name, t, len(prepared) / t, t / audio_s, peak) for name, (t, peak) in best.items()]

    precision = str(extractor.autocast_dtype or torch.float32).replace("torch.", "")
    print(
        f"model: {model}, layers={args.layers}, device={args.device}, compute {precision}, "
        f"torch threads={torch.get_num_threads()}"
    )
    print(
        f"audio: {len(prepared)} clips from {source}, {audio_s:.1f} s in all "
        f"({min(p.seconds for p in prepared):.1f}-{max(p.seconds for p in prepared):.1f} s each), "
        f"batch budget {args.budget_s:.0f} s; {prepare_what} {prepare_s:.2f} s; setup {setup_s:.1f} s"
    )
    print(f"best of {args.repeats} alternating runs each")
    print(f"{'mode':<24}{'seconds':>9}{'clips/s':>9}{'RTF':>9}{'peak GPU GiB':>14}")
    for name, elapsed, rate, rtf, peak in rows:
        print(f"{name:<24}{elapsed:>9.2f}{rate:>9.2f}{rtf:>9.4f}{peak:>14.2f}")
    print(f"speed-up of batching: {rows[0][1] / rows[1][1]:.2f}x")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
