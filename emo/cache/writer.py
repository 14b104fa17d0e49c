"""CacheWriter: create or resume a cache and append one modality's sequences batch by batch."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from emo import __version__
from emo.cache.clip_table import TableChanges, create_table, sync_table
from emo.cache.fingerprint import canonical
from emo.cache.h5file import check_emo_file, open_h5
from emo.cache.lock import WriterLock
from emo.cache.validation import check_structure
from emo.cache.schema import (
    FORMAT,
    MODALITIES,
    SCHEMA_VERSION,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
    STATUS_PENDING,
    chunk_rows,
)
from emo.clip import Clip
from emo.errors import CacheError

_STATUS_BY_NAME = {"missing": STATUS_MISSING, "failed": STATUS_FAILED}


class CacheWriter:
    """Writes a cache; reopening the same path resumes it (new clips are appended).

    The HDF5 file stays open, and `<path>.lock` names this process as its one writer, until `close`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dataset: str | None = None,
        clips: Sequence[Clip] | None = None,
        label_names: Sequence[str] | None = None,
        drop_absent: bool = False,
    ):
        """drop_absent: `clips` is the whole dataset, so stored clips not among them are dropped
        (else they are kept and counted in `table_changes.absent`)."""
        self.path = Path(path)
        self.table_changes = TableChanges()
        existed = self.path.exists() and self.path.stat().st_size > 0
        if not existed and not clips:
            raise CacheError(f"{self.path}: a new cache needs its clips")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # emo's own lock first: HDF5's may be off (HDF5_USE_FILE_LOCKING=FALSE on shared file systems).
        self.lock = WriterLock(self.path).acquire()
        try:
            self.h5 = open_h5(self.path, "a")
        except BaseException:
            self.lock.release()
            raise
        try:
            if existed:
                check_emo_file(self.h5, self.path)
                check_structure(self.h5, self.path)
            else:
                self._create(dataset or "unknown", clips, label_names)
            if existed and clips:
                self.table_changes = sync_table(self.h5, clips, label_names, drop_absent, self.path)
            self._index = {cid: i for i, cid in enumerate(self.clip_ids)}
            for modality in self.modalities:
                self._drop_uncommitted_rows(modality)
            self.h5.flush()
        except BaseException:
            self.h5.close()
            self.lock.release()
            raise

    # -- clip table -------------------------------------------------------------------
    def _create(self, dataset: str, clips: Sequence[Clip], label_names: Sequence[str] | None) -> None:
        ids = [c.id for c in clips]
        if len(set(ids)) != len(ids):
            raise CacheError(f"{self.path}: duplicate clip ids in the clip list")
        names = list(label_names) if label_names else sorted({c.label for c in clips})
        self.h5.attrs.update(
            format=FORMAT,
            schema_version=SCHEMA_VERSION,
            dataset=dataset,
            emo_version=__version__,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        create_table(self.h5, clips, names, self.path)

    @property
    def clip_ids(self) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self.h5["clips/id"][:]]

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if m in self.h5]

    # -- modalities -------------------------------------------------------------------
    def open_modality(
        self,
        modality: str,
        fingerprint: dict,
        row_shape: tuple[int, ...],
        dtype: str,
        force: bool = False,
        options: dict | None = None,
    ) -> str:
        """Get `modality` ready for writing: 'kept' (same fingerprint, resume), 'new' or 'rebuilt'.

        `options` (JSON-able) records how the extractor was asked for (backbone name, layers
        spec, fps...) so `emo predict` can rebuild the same extractor; it is not compared.
        """
        if modality not in MODALITIES:
            raise CacheError(f"{self.path}: unknown modality {modality!r} (one of {', '.join(MODALITIES)})")
        row_shape = tuple(int(n) for n in row_shape)
        if modality in self.h5:
            group = self.h5[modality]
            same = (
                group.attrs.get("fingerprint") == canonical(fingerprint)
                and tuple(group.attrs["row_shape"]) == row_shape
                and group.attrs["dtype"] == np.dtype(dtype).name
            )
            if same and not force:
                if options is not None:
                    group.attrs["extract_options"] = json.dumps(options, sort_keys=True, default=str)
                return "kept"
            del self.h5[modality]  # a changed backbone invalidates every stored clip of this modality
            action = "rebuilt"
        else:
            action = "new"
        import h5py

        n = len(self._index)
        group = self.h5.create_group(modality)
        row_bytes = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
        group.create_dataset(
            "data", shape=(0, *row_shape), maxshape=(None, *row_shape), dtype=dtype, chunks=(chunk_rows(row_bytes), *row_shape),
            fletcher32=True,  # a checksum per chunk: damaged bytes fail the read instead of passing as features
        )
        # On disk the ragged index is `offsets` (N, 2): each clip row's [start, end) span of `data`
        # ("spans" in code; clips in table order, rows in write order, so spans need not be sorted).
        # Readers turn spans into the two other encodings: Sequences.bounds, (N + 1,) cumulative
        # boundaries of a contiguous copy, and the in-memory starts + lengths of emo.fusion.data.
        group.create_dataset("offsets", data=np.zeros((n, 2), np.int64), maxshape=(None, 2), chunks=(4096, 2), fletcher32=True)
        group.create_dataset("status", data=np.zeros(n, np.uint8), maxshape=(None,), chunks=(4096,), fletcher32=True)
        group.create_dataset("reason", data=np.array([""] * n, dtype=object), dtype=h5py.string_dtype(), maxshape=(None,), chunks=(1024,))
        group.attrs.update(fingerprint=canonical(fingerprint), row_shape=row_shape, dtype=np.dtype(dtype).name)
        if options is not None:
            group.attrs["extract_options"] = json.dumps(options, sort_keys=True, default=str)
        self.h5.flush()
        return action

    def _drop_uncommitted_rows(self, modality: str) -> None:
        """Cut data rows a killed writer appended but never committed (their status stayed pending)."""
        group = self.h5[modality]
        status = group["status"][:]
        ok = status == STATUS_OK
        spans = group["offsets"][:]
        end = int(spans[:, 1][ok].max()) if ok.any() else 0
        if group["data"].shape[0] != end:
            group["data"].resize(end, axis=0)

    def _group(self, modality: str):
        if modality not in self.h5:
            raise CacheError(f"{self.path}: modality {modality!r} was not opened (open_modality)")
        return self.h5[modality]

    def status_codes(self, modality: str) -> np.ndarray:
        return self._group(modality)["status"][:]

    def pending(self, modality: str) -> list[str]:
        status = self.status_codes(modality)
        ids = self.clip_ids
        return [ids[i] for i in np.flatnonzero(status == STATUS_PENDING)]

    def _rows(self, modality: str, clip_ids) -> np.ndarray:
        try:
            return np.array([self._index[c] for c in clip_ids], dtype=np.int64)
        except KeyError as exc:
            raise CacheError(f"{self.path}: clip {exc.args[0]!r} is not in the cache's clip table") from None

    def write(self, modality: str, sequences: Mapping[str, np.ndarray]) -> None:
        """Append one batch; it becomes visible all at once, after the data is on disk."""
        if not sequences:
            return
        group = self._group(modality)
        row_shape = tuple(group.attrs["row_shape"])
        ids = list(sequences)
        rows = self._rows(modality, ids)
        order = np.argsort(rows)  # h5py point selections must be increasing
        rows, ids = rows[order], [ids[i] for i in order]
        arrays = [np.asarray(sequences[c]) for c in ids]
        for cid, arr in zip(ids, arrays):
            if arr.ndim != len(row_shape) + 1 or tuple(arr.shape[1:]) != row_shape or arr.shape[0] == 0:
                raise CacheError(f"{self.path}: clip {cid!r} {modality} has shape {arr.shape}, expected (T>0, {row_shape})")
        with np.errstate(over="ignore"):  # overflow shows up as inf, refused just below
            stored = [a.astype(group["data"].dtype, copy=False) for a in arrays]
        for cid, arr in zip(ids, stored):
            # Checked after the cast: a float32 value beyond float16's range becomes inf only here.
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise CacheError(f"{self.path}: clip {cid!r} {modality} holds NaN/inf values; refusing to store them")
        if np.any(group["status"][rows.tolist()] == STATUS_OK):
            raise CacheError(f"{self.path}: a clip in this batch is already stored for {modality}")
        lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        data = group["data"]
        start = data.shape[0]
        ends = start + np.cumsum(lengths)
        data.resize(int(ends[-1]), axis=0)
        data[start:] = np.concatenate(stored)
        group["offsets"][rows.tolist()] = np.stack([ends - lengths, ends], axis=1)  # the batch's spans
        group["reason"][rows.tolist()] = np.array([""] * len(ids), dtype=object)
        self.h5.flush()
        # The commit point: statuses turn ok only once data and offsets are flushed.
        group["status"][rows.tolist()] = STATUS_OK
        self.h5.flush()

    def fail(self, modality: str, clip_id: str, reason: str, status: str = "failed") -> None:
        """Record why a clip has no sequence ('missing': no such modality; 'failed': an error)."""
        if status not in _STATUS_BY_NAME:
            raise ValueError(f"status must be 'missing' or 'failed', not {status!r}")
        group = self._group(modality)
        row = int(self._rows(modality, [clip_id])[0])
        group["reason"][row] = reason.replace("\n", " ")[:500]
        group["status"][row] = _STATUS_BY_NAME[status]
        self.h5.flush()

    def retry_failed(self, modality: str) -> int:
        """Turn failed clips back to pending (after the user fixed the files); returns how many."""
        group = self._group(modality)
        status = group["status"][:]
        failed = np.flatnonzero(status == STATUS_FAILED)
        if len(failed):
            group["status"][failed.tolist()] = STATUS_PENDING
            self.h5.flush()
        return len(failed)

    def close(self) -> None:
        if self.h5.id.valid:
            self.h5.close()
        self.lock.release()

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
