"""How fast does `emo fit` train from the in-memory cache, against a per-clip .npy DataLoader?

Builds a CREMA-D-sized synthetic cache (default 7442 clips; audio ~130 frames x 1024, visual
16 x 768, float16) plus the same clips as one .npy per clip and modality (the EmoBox / MMSA
layout), then trains the same cross_attention head on the same split, epochs and schedule:

    emo       emo.fusion.fit: cache read once into memory, batches gathered by index
    loader    torch DataLoader over a Dataset that np.load()s each clip's files, pad-collate

Each variant runs in its own subprocess so its peak RSS is its own. Reported: wall time
(imports, loading, training, test included), training time (the epoch loop with its
per-epoch validation), training clips per second of that loop, batch assembly alone (one pass
over every clip, no model: where the two pipelines differ), peak RSS, CUDA max allocated,
and the ratios.

    python bench/fit_speed.py                                  # full size (a GPU job)
    python bench/fit_speed.py --clips 300 --epochs 2           # a CPU-sized run
    python bench/fit_speed.py --clips 600 --epochs 3 --set d_model=64 --set blocks=1   # data-bound

The default fit (`--default-fit compare|whisper-base`): an EMO-DB-sized speech cache (535 clips,
10 speakers, 7 classes, 1.2-9 s clips around 2.8 s) either as ComParE LLD frames (100 Hz, 65-d)
or as whisper-base hidden states (50 Hz, 7 layers x 512), then `emo fit --head audio --split
kfold-speaker:5` with every default, in a subprocess with `--threads` torch threads. Reported:
per-epoch seconds, epochs run per fold, total wall, peak RSS; and, as the baseline in the same
run, the seconds of one epoch under the defaults emo had before (256-d, 2 blocks, batch 32, no
temporal reduction, mean pooling):

    python bench/fit_speed.py --default-fit compare --threads 2
    python bench/fit_speed.py --default-fit whisper-base --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The checkout's emo, not whichever is installed (the numbers must describe this code).
import _common  # noqa: E402 (this checkout's emo on sys.path)

CLASSES = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
SPEAKERS = 91


def build(folder: Path, clips: int, audio: tuple[int, int], visual: tuple[int, int], seed: int) -> None:
    """cache.h5 and npy/<modality>/<id>.npy with identical contents (weak class signal)."""
    from emo.cache import CacheWriter
    from emo.clip import Clip

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), clips)
    lengths = np.clip(rng.normal(audio[0], audio[0] * 0.2, clips), audio[0] // 3, audio[0] * 2).astype(int)
    records = [
        Clip(id=f"{i % SPEAKERS + 1001}_{i:05d}", label=CLASSES[labels[i]], speaker=str(i % SPEAKERS + 1001),
             duration=float(lengths[i]) / 50.0)
        for i in range(clips)
    ]
    directions = {"audio": rng.standard_normal((len(CLASSES), audio[1])), "visual": rng.standard_normal((len(CLASSES), visual[1]))}
    for m in ("audio", "visual"):
        (folder / "npy" / m).mkdir(parents=True, exist_ok=True)
    with CacheWriter(folder / "cache.h5", dataset="bench-crema-sized", clips=records, label_names=CLASSES) as writer:
        # 50 Hz: the frame rate of wav2vec2-style encoders (CREMA-D's audio in the paper), so the
        # head reduces it to its target rate exactly as it would reduce the real features.
        writer.open_modality("audio", {"backbone": "synthetic", "layers": [0], "frame_rate": 50.0}, (1, audio[1]), "float16")
        writer.open_modality("visual", {"backbone": "synthetic", "layers": [0]}, (1, visual[1]), "float16")
        for start in range(0, clips, 256):  # bounded memory at full size (~2 GB of audio)
            batch = {"audio": {}, "visual": {}}
            for i in range(start, min(start + 256, clips)):
                cid = records[i].id
                for m, t in (("audio", lengths[i]), ("visual", visual[0])):
                    width = audio[1] if m == "audio" else visual[1]
                    x = (rng.standard_normal((t, 1, width), dtype=np.float32) + 0.3 * directions[m][labels[i]]).astype(np.float16)
                    batch[m][cid] = x
                    np.save(folder / "npy" / m / f"{cid}.npy", x)
            for m in ("audio", "visual"):
                writer.write(m, batch[m])


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def cuda_peak_mib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run_emo(folder: Path, args) -> dict:
    from emo.fusion import fit, load_data
    from emo.accel import resolve_device

    device = resolve_device(args.device)
    start = time.perf_counter()
    data = load_data(folder / "cache.h5", ["audio", "visual"], device=device)
    # Batch assembly alone: one epoch's worth of batches, no model.
    order = np.random.default_rng(0).permutation(len(data))
    tick = time.perf_counter()
    for first in range(0, len(order), args.batch_size):
        batch = data.batch(order[first : first + args.batch_size], ["audio", "visual"], device)
    synchronize(device)
    data_s = time.perf_counter() - tick
    result = fit(
        folder / "cache.h5", data=data, head="cross_attention", epochs=args.epochs, batch_size=args.batch_size,
        patience=0, device=args.device, quiet=True, seed=0, head_params=args.hparams,
    )
    wall = time.perf_counter() - start
    fold = result.metrics
    steps = fold["n_train"] * fold["epochs_run"]
    train_s = sum(record["seconds"] for record in result.histories[0])  # epochs incl. validation
    return {"wall_s": wall, "train_s": train_s, "train_clips": fold["n_train"], "epochs": fold["epochs_run"],
            "clips_per_s": steps / train_s, "data_clips_per_s": len(order) / data_s,
            "peak_rss_mib": peak_rss_mib(), "cuda_peak_mib": cuda_peak_mib(device), "uar": fold["uar"]}


class NpyClips:
    """A torch Dataset in the per-clip-file layout: every item is an np.load per modality."""

    def __init__(self, folder: Path, ids: list[str], labels: np.ndarray):
        self.folder, self.ids, self.labels = folder, ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        cid = self.ids[i]
        return {m: np.load(self.folder / "npy" / m / f"{cid}.npy") for m in ("audio", "visual")}, int(self.labels[i])


class SameBatchesAsFit:
    """Batches of dataset positions in the order emo.fusion.train_fold draws them (seed 0, fold 0)."""

    def __init__(self, train: np.ndarray, batch_size: int):
        self.train, self.batch_size = train, batch_size
        self.rng = np.random.default_rng([0, 0])

    def __len__(self) -> int:
        return -(-len(self.train) // self.batch_size)

    def __iter__(self):
        order = self.train[self.rng.permutation(len(self.train))]
        for first in range(0, len(order), self.batch_size):
            yield order[first : first + self.batch_size].tolist()


def pad_collate(items):
    import torch

    batch = {}
    for m in ("audio", "visual"):
        arrays = [item[0][m] for item in items]
        t_max = max(a.shape[0] for a in arrays)
        x = np.zeros((len(arrays), t_max, *arrays[0].shape[1:]), dtype=arrays[0].dtype)
        mask = np.zeros((len(arrays), t_max), dtype=bool)
        for i, a in enumerate(arrays):
            x[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = True
        batch[m] = (torch.from_numpy(x), torch.from_numpy(mask))
    return batch, torch.tensor([item[1] for item in items])


def run_loader(folder: Path, args) -> dict:
    """The same model, optimiser, schedule, split and epochs as `fit`, fed by a DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    from emo.accel import autocast, choose_precision, resolve_device
    from emo.cache import CacheReader
    from emo.fusion.heads import InputSpec, build_head
    from emo.fusion.splits import make_folds
    from emo.fusion.train import warmup_cosine

    device = resolve_device(args.device)
    start = time.perf_counter()
    table = CacheReader(folder / "cache.h5").clips  # the clip list only, as a manifest would give
    (fold,) = make_folds("stratified", table.labels, table.speakers, class_names=table.label_names, seed=0)
    ids = np.array(table.ids, dtype=object)
    loader_args = dict(collate_fn=pad_collate, num_workers=args.workers, pin_memory=device.type == "cuda")
    # The same batches as fit: its seeded permutation of the training clips every epoch, so both
    # variants pad and compute exactly the same batches and only the data pipeline differs.
    train = DataLoader(NpyClips(folder, list(ids), table.labels), persistent_workers=args.workers > 0,
                       batch_sampler=SameBatchesAsFit(fold.train, args.batch_size), **loader_args)
    evaluation = {name: DataLoader(NpyClips(folder, list(ids[part]), table.labels[part]), batch_size=128, **loader_args)
                  for name, part in (("val", fold.val), ("test", fold.test))}
    # Batch assembly alone: one pass of the loader over every clip, no model.
    everything = DataLoader(NpyClips(folder, list(ids), table.labels), batch_size=args.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(1), **loader_args)
    tick = time.perf_counter()
    for batch, y in everything:
        batch = {m: (x.to(device, non_blocking=True), mask.to(device, non_blocking=True)) for m, (x, mask) in batch.items()}
    synchronize(device)
    data_s = time.perf_counter() - tick
    torch.manual_seed(0)
    inputs = {"audio": InputSpec("audio", "features", (1, args.audio_dim)), "visual": InputSpec("visual", "features", (1, args.visual_dim))}
    head = build_head("cross_attention", inputs, len(CLASSES), **args.hparams).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(len(train) * args.epochs, 0.05))

    def to_device(batch):
        return {m: (x.to(device, non_blocking=True), mask.to(device, non_blocking=True)) for m, (x, mask) in batch.items()}

    def score(loader):
        head.eval()
        right = total = 0
        with torch.no_grad(), autocast(device, choose_precision(device).dtype):
            for batch, y in loader:
                right += int((head(to_device(batch)).argmax(1).cpu() == y).sum())
                total += len(y)
        return right / total

    loop_start = time.perf_counter()
    for _ in range(args.epochs):
        head.train()
        for batch, y in train:
            with autocast(device, choose_precision(device).dtype):
                logits = head(to_device(batch))
            loss = torch.nn.functional.cross_entropy(logits.float(), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
        score(evaluation["val"])
    train_s = time.perf_counter() - loop_start
    accuracy = score(evaluation["test"])
    wall = time.perf_counter() - start
    steps = len(fold.train) * args.epochs
    return {"wall_s": wall, "train_s": train_s, "train_clips": int(len(fold.train)), "epochs": args.epochs,
            "clips_per_s": steps / train_s, "data_clips_per_s": len(ids) / data_s,
            "peak_rss_mib": peak_rss_mib(), "cuda_peak_mib": cuda_peak_mib(device), "accuracy": accuracy}


# -- the default 5-fold fit on an EMO-DB-sized speech cache ------------------------------------------
SPEECH_SHAPES = {"compare": (100.0, 1, 65), "whisper-base": (50.0, 7, 512)}  # frame rate, layers, width
OLD_DEFAULTS = dict(head_params={"d_model": 256, "heads": 4, "blocks": 2, "ffn": 512, "dropout": 0.1,
                                 "target_rate": None, "pooling": "mean"}, lr=1e-4, batch_size=32)


SPEECH_CLIPS = 535  # EMO-DB's size


def build_speech(path: Path, shape: str) -> None:
    from emo.cache import CacheWriter
    from emo.clip import Clip

    rate, layers, width = SPEECH_SHAPES[shape]
    classes = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]
    clips = SPEECH_CLIPS
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(classes), clips)
    seconds = np.clip(rng.normal(2.8, 1.2, clips), 1.2, 9.0)
    records = [Clip(id=f"s{i % 10}_{i:04d}", label=classes[labels[i]], speaker=f"s{i % 10}", duration=float(seconds[i]))
               for i in range(clips)]
    directions = rng.standard_normal((len(classes), width))
    with CacheWriter(path, dataset=f"bench-emodb-{shape}", clips=records, label_names=classes) as writer:
        writer.open_modality("audio", {"backbone": f"synthetic-{shape}", "layers": list(range(layers)), "frame_rate": rate},
                       (layers, width), "float16")
        for start in range(0, clips, 64):
            batch = {}
            for i in range(start, min(start + 64, clips)):
                frames = int(seconds[i] * rate)
                x = rng.standard_normal((frames, layers, width), dtype=np.float32) + 0.3 * directions[labels[i]]
                batch[records[i].id] = x.astype(np.float16)
            writer.write("audio", batch)


def run_default_fit(path: Path, args) -> dict:
    from emo.fusion import fit, load_data

    start = time.perf_counter()
    data = load_data(path, ["audio"])
    if args.variant == "old-epoch":  # the baseline: one epoch of one fold under the old defaults
        result = fit(path, data=data, head="audio", split="kfold-speaker:5", epochs=1, quiet=True, device="cpu",
                     **OLD_DEFAULTS)
        epoch_s = result.histories[0][0]["seconds"]
        return {"epoch_s": epoch_s, "peak_rss_mib": peak_rss_mib()}
    result = fit(path, data=data, head="audio", split="kfold-speaker:5", quiet=True, device="cpu")
    epochs = [r["seconds"] for history in result.histories for r in history]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime, "epoch_s": float(np.mean(epochs)), "epochs_run": [len(h) for h in result.histories],
            "peak_rss_mib": peak_rss_mib(), "uar": result.metrics["uar"], "hparams": result.record.head["hparams"]}


def default_fit_main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="emo-bench-") as tmp:
        path = (args.folder or Path(tmp)) / f"emodb-{args.default_fit}.h5"
        if not path.exists():
            tick = time.perf_counter()
            build_speech(path, args.default_fit)
            print(f"built {path} in {time.perf_counter() - tick:.1f}s", file=sys.stderr)
        results = {}
        for variant in ("default", "old-epoch"):
            command = [sys.executable, __file__, "--default-fit", args.default_fit, "--variant", variant,
                       "--folder", str(path.parent), "--threads", str(args.threads or 0)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{variant}: {results[variant]}", file=sys.stderr)
    new, old = results["default"], results["old-epoch"]
    rate, layers, width = SPEECH_SHAPES[args.default_fit]
    print(f"emo fit --head audio --split kfold-speaker:5 (all defaults) on 535 synthetic clips, {rate:g} Hz, "
          f"{layers} x {width}; torch threads {args.threads or 'default'}")
    print(f"defaults {new['hparams']}")
    print(f"total wall {new['wall_s']:.1f} s (load + 5 folds + scoring; CPU time of the process "
          f"{new['cpu_s']:.1f} s), {new['epoch_s']:.2f} s per epoch, "
          f"epochs run per fold {new['epochs_run']}, peak RSS {new['peak_rss_mib']:.0f} MiB")
    print(f"old defaults (256-d, 2 blocks, no reduction): {old['epoch_s']:.2f} s per epoch "
          f"({old['epoch_s'] / new['epoch_s']:.1f}x the new defaults' epoch), peak RSS {old['peak_rss_mib']:.0f} MiB")


def parse_hparams(items: list[str]) -> dict:
    from emo.fusion.sweep import parse_assignments

    return parse_assignments(items)


def main() -> None:
    parser = _common.bench_parser(__doc__)
    parser.add_argument("--clips", type=int, default=7442)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--audio-frames", type=int, default=130)
    parser.add_argument("--audio-dim", type=int, default=1024)
    parser.add_argument("--visual-frames", type=int, default=16)
    parser.add_argument("--visual-dim", type=int, default=768)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=min(4, max(0, (os.cpu_count() or 1) - 1)), help="DataLoader workers of the baseline")
    _common.add_threads(parser)
    parser.add_argument("--set", dest="hparams", action="append", default=[], help="cross_attention hyperparameter KEY=VALUE")
    parser.add_argument("--folder", type=Path, default=None, help="reuse/build the data here (default: a temp folder)")
    parser.add_argument("--variant", choices=["emo", "loader", "default", "old-epoch"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--default-fit", choices=sorted(SPEECH_SHAPES), default=None,
                        help="time the default 5-fold audio fit on an EMO-DB-sized cache of this shape")
    args = parser.parse_args()
    args.hparams = parse_hparams(args.hparams)
    _common.set_threads(args.threads)
    if args.default_fit:
        if args.variant:
            print(json.dumps(run_default_fit(args.folder / f"emodb-{args.default_fit}.h5", args)))
        else:
            default_fit_main(args)
        return

    if args.variant:  # child process: one variant, JSON on stdout
        folder = args.folder
        print(json.dumps(run_emo(folder, args) if args.variant == "emo" else run_loader(folder, args)))
        return

    with tempfile.TemporaryDirectory(prefix="emo-bench-") as tmp:
        folder = args.folder or Path(tmp)
        if not (folder / "cache.h5").exists():
            tick = time.perf_counter()
            build(folder, args.clips, (args.audio_frames, args.audio_dim), (args.visual_frames, args.visual_dim), seed=0)
            print(f"built {args.clips} clips (cache + per-clip .npy) in {time.perf_counter() - tick:.1f}s", file=sys.stderr)
        results = {}
        for variant in ("emo", "loader"):
            command = [sys.executable, __file__, "--variant", variant, "--folder", str(folder), *sys.argv[1:]]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{variant}: {results[variant]}", file=sys.stderr)

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    print(f"cross_attention {args.hparams or '(default dims)'}; {args.clips} clips, audio ~{args.audio_frames}x{args.audio_dim}, "
          f"visual {args.visual_frames}x{args.visual_dim} float16; {args.epochs} epochs, batch {args.batch_size}; "
          f"device {device}; torch threads {args.threads or torch.get_num_threads()}; loader workers {args.workers}")
    print(f"{'variant':<8} {'wall s':>8} {'train s':>8} {'train clips/s':>14} {'batching clips/s':>17} "
          f"{'peak RSS MiB':>13} {'CUDA max MiB':>13}")
    for variant, r in results.items():
        cuda = f"{r['cuda_peak_mib']:.0f}" if r["cuda_peak_mib"] is not None else "-"
        print(f"{variant:<8} {r['wall_s']:8.1f} {r['train_s']:8.1f} {r['clips_per_s']:14.1f} {r['data_clips_per_s']:17.0f} "
              f"{r['peak_rss_mib']:13.0f} {cuda:>13}")
    emo, loader = results["emo"], results["loader"]
    print(f"emo / loader: training clips/s {emo['clips_per_s'] / loader['clips_per_s']:.2f}x, "
          f"batch assembly clips/s {emo['data_clips_per_s'] / loader['data_clips_per_s']:.2f}x, "
          f"wall time {emo['wall_s'] / loader['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
