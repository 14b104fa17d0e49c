"""The HDF5 layout of an emo cache, in one place.

    /                 attrs: format="emo-cache", schema_version, dataset, emo_version, created
    /clips/           id, label (index into attrs label_names), speaker, duration, text,
                      audio_path, video_path: one row per clip; extras/<column>: str columns
    /<modality>/      audio | text | visual | faces
        data          (rows, *row_shape): every clip's frames concatenated, chunked along rows
        offsets       (clips, 2) int64: [start, end) of each clip's rows in data
        status        (clips,) uint8: pending / ok / missing / failed
        reason        (clips,) str: why a clip is missing or failed
        attrs         fingerprint (JSON), row_shape, dtype

A clip's rows become visible only when its status turns ok, after its data and offsets
are written and flushed; data rows past the last committed clip are leftovers of a
killed writer and are cut off when the file is reopened for writing.
"""

from __future__ import annotations

FORMAT = "emo-cache"
SCHEMA_VERSION = 1
MODALITIES = ("audio", "text", "visual", "faces")

STATUS_PENDING = 0
STATUS_OK = 1
STATUS_MISSING = 2
STATUS_FAILED = 3
STATUS_NAMES = {STATUS_PENDING: "pending", STATUS_OK: "ok", STATUS_MISSING: "missing", STATUS_FAILED: "failed"}

CLIP_STRING_COLUMNS = ("id", "speaker", "text", "audio_path", "video_path")
TARGET_CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: large enough for fast bulk reads, small enough to append


def chunk_rows(row_bytes: int) -> int:
    return max(1, TARGET_CHUNK_BYTES // max(1, row_bytes))
