"""Cross-corpus UAR on real Korean speech: train on one speaker group, test on the other.

    python bench/cross_corpus.py [--dir /work/caches/xc] [--features logmel,egemaps] [--seeds 0] [--data DIR]

The two "corpora" are the two groups of kor_emotiontts (../shared/data): the 10 ne* speakers
(emotional-to-emotional, 200 clips, each emotion read with its own scripts) through the
kor-emotion adapter, and the 5 em* speakers (plain-to-emotional, 100 clips, the same neutral
sentences acted in four emotions) through a manifest whose labels are named differently
(neu, hap, sad, ang), so every direction needs `--label-map`. The manifest's audio files are
hard links to the shared recordings (never copies into the project).

Each direction is one `emo fit A --test-cache B` command (printed), with the audio head of
BENCHMARKS.md's Korean section: d_model=64, heads=4, blocks=1, ffn=128, dropout=0.2, lr 1e-3,
at most 60 epochs, early stopping on a speaker-disjoint validation part (--val-fraction 0.2).
Chance UAR is 0.25.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kor_emotiontts"
EM_NAMES = {"neutral": "neu", "happy": "hap", "sad": "sad", "angry": "ang"}  # the manifest's label names
LABELS = ("neutral", "happy", "sad", "angry")  # clip numbers 1xx, 2xx, 3xx, 4xx (see shared/data/README.md)
HEAD = ["--set", "d_model=64", "--set", "heads=4", "--set", "blocks=1", "--set", "ffn=128", "--set", "dropout=0.2"]


def em_manifest(folder: Path, data: Path) -> Path:
    """manifest.csv for the em* speakers with renamed labels; the wavs hard-linked beside it."""
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for wav in sorted((data / "plain-to-emotional").glob("*/wav/*.wav")):
        link = folder / "wav" / wav.name
        if not link.exists():
            os.link(wav, link)
        label = EM_NAMES[LABELS[(int(wav.stem[3:]) - 1) // 100]]
        rows.append({"id": wav.stem, "label": label, "speaker": wav.stem[:3], "audio": f"wav/{wav.name}"})
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def emo(*args: str) -> None:
    command = [sys.executable, "-m", "emo", *args]
    print("$ emo " + " ".join(args), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def main() -> None:
    parser = _common.bench_parser(__doc__, summary_only=True)
    parser.add_argument("--dir", type=Path, default=Path("/work/caches/xc"))
    parser.add_argument("--features", default="logmel", help="comma list of audio backbones (built-ins)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--data", type=Path, default=DATA, help="the kor_emotiontts folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} is absent: this benchmark needs the shared Korean recordings")
    manifest = em_manifest(args.dir / "em", args.data)
    to_ne = ",".join(f"{short}={name}" for name, short in EM_NAMES.items() if short != name)
    to_em = ",".join(f"{name}={short}" for name, short in EM_NAMES.items() if short != name)
    rows = []
    for feature in args.features.split(","):
        ne, em = args.dir / f"ne-{feature}.h5", args.dir / f"em-{feature}.h5"
        if not ne.exists():
            emo("extract", "kor-emotion", str(args.data / "emotional-to-emotional"), "-o", str(ne), "--modalities", "audio",
                "--audio-backbone", feature)
        if not em.exists():
            emo("extract", "manifest", str(manifest), "-o", str(em), "--modalities", "audio", "--audio-backbone", feature)
        for seed in args.seeds.split(","):
            for name, train, test, label_map in (("ne->em", ne, em, to_ne), ("em->ne", em, ne, to_em)):
                out = args.dir / "runs" / f"{feature}-{name.replace('->', '2')}-s{seed}"
                start = time.perf_counter()
                emo("fit", str(train), "--head", "audio", "--out", str(out), "--overwrite", "--split", "speaker",
                    "--val-fraction", "0.2", "--epochs", str(args.epochs), "--lr", "1e-3", "--seed", seed, *HEAD,
                    "--test-cache", str(test), "--label-map", label_map, "--quiet")
                seconds = time.perf_counter() - start
                metrics = json.loads((out / "metrics.json").read_text())
                recalls = " ".join(f"{c} {v['recall']:.2f}" for c, v in metrics["per_class"].items())
                rows.append((feature, name, seed, metrics["uar"], metrics["n"], metrics["n_train"], recalls, seconds))
    print("\nfeatures | direction | seed | UAR | test clips | train clips | recall per class | fit s")
    for feature, name, seed, uar, n, n_train, recalls, seconds in rows:
        print(f"{feature} | {name} | {seed} | {uar:.3f} | {n} | {n_train} | {recalls} | {seconds:.0f}")


if __name__ == "__main__":
    main()
