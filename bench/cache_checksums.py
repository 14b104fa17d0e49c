"""What the cache's safety checks cost on the path `emo fit` takes: a warm full load of one modality.

Compares, in the same run and on the same data, a cache as `CacheWriter` writes it now
(fletcher32 checksum per chunk, NaN/inf check of the loaded block) with a copy of it whose
data carries no checksums (as caches before the checksums were written), both loaded through
`CacheReader.load`. Also times the structure check that every `CacheReader` runs.

    python bench/cache_checksums.py [--clips 2000] [--dir /tmp/emo-bench-checksums]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import _common  # noqa: E402 (this checkout's emo on sys.path)

from emo.cache import CacheReader, CacheWriter  # noqa: E402
from emo.cache.reader import non_finite_rows  # noqa: E402
from emo.cache.validation import check_structure  # noqa: E402
from emo.clip import Clip  # noqa: E402

ROW_SHAPE = (1, 1024)  # wav2vec2-large last layer, float16
MEAN_FRAMES = 130  # CREMA-D's mean clip length at 50 frames/s
BATCH = 64


def write_cache(path: Path, clips: int, rng) -> int:
    ids = [f"c{i:05d}" for i in range(clips)]
    table = [Clip(id=c, label=("a", "b", "c", "d")[i % 4], speaker=f"s{i % 91}", audio=f"/d/{c}.wav") for i, c in enumerate(ids)]
    lengths = rng.integers(MEAN_FRAMES * 2 // 3, MEAN_FRAMES * 4 // 3, clips)
    with CacheWriter(path, dataset="bench", clips=table) as writer:
        writer.open_modality("audio", {"backbone": "bench"}, ROW_SHAPE, "float16")
        for start in range(0, clips, BATCH):
            batch = {ids[i]: rng.standard_normal((int(lengths[i]), *ROW_SHAPE), dtype=np.float32) for i in range(start, min(clips, start + BATCH))}
            writer.write("audio", batch)
    return int(lengths.sum())


def strip_checksums(source: Path, target: Path) -> None:
    shutil.copy(source, target)
    with h5py.File(target, "a") as h5:
        data = h5["audio/data"]
        values, chunks = data[:], data.chunks
        del h5["audio/data"]
        h5["audio"].create_dataset("data", data=values, maxshape=(None, *ROW_SHAPE), chunks=chunks)


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = _common.bench_parser(__doc__, summary_only=True)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="emo-bench-checksums-"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    checked, plain = folder / "checksummed.h5", folder / "plain.h5"
    for path in (checked, plain):
        path.unlink(missing_ok=True)
    rows = write_cache(checked, args.clips, rng)
    strip_checksums(checked, plain)
    megabytes = rows * int(np.prod(ROW_SHAPE)) * 2 / 1e6
    print(f"{args.clips} clips, {rows} rows of {ROW_SHAPE} float16 = {megabytes:.0f} MB; best of {args.repeats}, warm")

    for path in (checked, plain):
        CacheReader(path).load("audio")  # warm the page cache
    with_sums = best_of(args.repeats, lambda: CacheReader(checked).load("audio"))
    without = best_of(args.repeats, lambda: CacheReader(plain).load("audio"))
    block = CacheReader(plain).load("audio").data
    finite = best_of(args.repeats, lambda: non_finite_rows(block))
    numpy_isfinite = best_of(args.repeats, lambda: np.isfinite(block).all())
    with h5py.File(checked, "r") as h5:
        structure = best_of(args.repeats, lambda: check_structure(h5, checked))
    print(f"full load, fletcher32 + NaN check : {with_sums:6.3f} s ({megabytes / with_sums:6.0f} MB/s)")
    print(f"full load, no checksums           : {without:6.3f} s ({megabytes / without:6.0f} MB/s)  (still NaN-checked)")
    print(f"  ratio checksummed / plain       : {with_sums / without:6.2f}x")
    print(f"NaN/inf check of the loaded block : {finite:6.3f} s (float16 bit test; np.isfinite: {numpy_isfinite:.3f} s)")
    print(f"structure check (every reader)    : {structure * 1000:6.1f} ms")
    if args.dir is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
