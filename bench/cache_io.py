"""Cache write and full-load throughput at CREMA-D size, against one .npy file per clip.

The per-clip .npy layout is what EmoBox and MMSA-FET write; `emo fit` instead loads a
modality with one bulk HDF5 read. Both layouts hold the same float16 arrays.

    python bench/cache_io.py [--clips 7442] [--dir /tmp/emo-bench]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import _common  # noqa: E402 (this checkout's emo on sys.path)

from emo.cache import CacheReader, CacheWriter  # noqa: E402
from emo.clip import Clip  # noqa: E402

# CREMA-D-sized sequences: wav2vec2-large audio ~130 frames x 1024, 16 face-frame
# embeddings x 768, ~12 text tokens x 768 (mean lengths; jittered per clip).
SHAPES = {"audio": (130, 1024), "visual": (16, 768), "text": (12, 768)}
BATCH = 64


def make_lengths(n: int, mean: int, rng) -> np.ndarray:
    jitter = 0 if mean <= 16 else mean // 3
    return np.clip(rng.integers(mean - jitter, mean + jitter + 1, n), 1, None)


def drop_page_cache(path: Path) -> None:
    """Best effort: ask the kernel to forget a file's pages so loads read the disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    except (OSError, AttributeError):
        pass


def main() -> None:
    parser = _common.bench_parser(__doc__)
    parser.add_argument("--clips", type=int, default=7442)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="emo-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    clips = [Clip(id=f"{i:05d}", label=str(i % 6), speaker=str(i % 91)) for i in range(args.clips)]
    lengths = {m: make_lengths(args.clips, t, rng) for m, (t, _) in SHAPES.items()}
    # One random pool per modality, sliced per clip: generating 2 GB of fresh noise would dominate.
    pools = {m: rng.standard_normal((int(lengths[m].max()) + 4096, d)).astype(np.float16) for m, (_, d) in SHAPES.items()}

    def sequence(m: str, i: int) -> np.ndarray:
        start = (i * 37) % 4096
        return pools[m][start : start + lengths[m][i]][:, None, :]

    total_bytes = sum(int(lengths[m].sum()) * d * 2 for m, (_, d) in SHAPES.items())
    print(f"{args.clips} clips, {total_bytes / 1e6:.0f} MB of float16 features in {root}")

    cache = root / "cache.h5"
    if cache.exists():
        cache.unlink()
    t0 = time.perf_counter()
    with CacheWriter(cache, dataset="bench", clips=clips) as writer:
        for m, (_, d) in SHAPES.items():
            writer.open_modality(m, {"backbone": "bench"}, (1, d), "float16")
            for start in range(0, args.clips, BATCH):
                writer.write(m, {clips[i].id: sequence(m, i) for i in range(start, min(start + BATCH, args.clips))})
    h5_write = time.perf_counter() - t0

    npy_root = root / "npy"
    shutil.rmtree(npy_root, ignore_errors=True)
    t0 = time.perf_counter()
    for m in SHAPES:
        (npy_root / m).mkdir(parents=True)
        for i, clip in enumerate(clips):
            np.save(npy_root / m / f"{clip.id}.npy", sequence(m, i))
    npy_write = time.perf_counter() - t0

    def load_h5() -> dict:
        reader = CacheReader(cache)
        return {m: reader.load(m) for m in SHAPES}

    def load_npy() -> dict:
        return {m: [np.load(npy_root / m / f"{c.id}.npy") for c in clips] for m in SHAPES}

    def timed(load):
        t0 = time.perf_counter()
        value = load()
        return time.perf_counter() - t0, value

    # Cold: both layouts dropped from the page cache first (reads hit the disk).
    # Warm: read again at once, from the page cache (the per-file overhead shows).
    os.sync()
    drop_page_cache(cache)
    for file in npy_root.rglob("*.npy"):
        drop_page_cache(file)
    h5_cold, loaded = timed(load_h5)
    npy_cold, per_clip = timed(load_npy)
    assert all(len(loaded[m]) == args.clips for m in SHAPES)
    assert all(np.array_equal(per_clip[m][7], loaded[m][7]) for m in SHAPES)
    del loaded, per_clip
    h5_warm, _ = timed(load_h5)
    npy_warm, _ = timed(load_npy)

    mb = total_bytes / 1e6
    print(f"{'':30s}{'seconds':>10s}{'MB/s':>10s}")
    for name, seconds in [
        ("write: emo HDF5 cache", h5_write),
        ("write: one .npy per clip", npy_write),
        ("cold load: emo HDF5 cache", h5_cold),
        ("cold load: one .npy per clip", npy_cold),
        ("warm load: emo HDF5 cache", h5_warm),
        ("warm load: one .npy per clip", npy_warm),
    ]:
        print(f"{name:30s}{seconds:10.2f}{mb / seconds:10.0f}")
    print(f"npy time / HDF5 time: write {npy_write / h5_write:.1f}x, cold load {npy_cold / h5_cold:.1f}x, "
          f"warm load {npy_warm / h5_warm:.1f}x; files: 1 vs {3 * args.clips}")
    print(f"cache size {cache.stat().st_size / 1e6:.0f} MB")
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
