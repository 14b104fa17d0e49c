"""One check of a cache's structure, run by every reader (info, verify, fit, eval, predict, merge).

A damaged or hand-edited cache (a fingerprint that is not a JSON object, a status array of
the wrong length, offsets past the end of the data, label indices outside the label set...)
is refused here with "corrupt cache: <what>", before any command computes with it. What this
checks is all metadata, O(clips) work; reading every feature row is `emo cache verify`'s job.
"""

from __future__ import annotations

import json

import numpy as np

from emo.cache.schema import MODALITIES, STATUS_NAMES, STATUS_OK
from emo.errors import CacheError

TABLE_NUMERIC = {"label": "i", "duration": "f"}  # column -> numpy dtype kind
TABLE_STRINGS = ("id", "speaker", "text", "audio_path", "video_path")


def corrupt(path, what: str) -> CacheError:
    return CacheError(f"{path}: corrupt cache: {what}")


def json_attr(obj, name: str, kind: type, path, where: str, default=None):
    """An attribute holding JSON of the given type (dict / list), or `default` when absent."""
    raw = obj.attrs.get(name)
    if raw is None:
        if default is None:
            raise corrupt(path, f"{where} has no {name} attribute")
        return default
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise corrupt(path, f"{where} {name} is a {type(raw).__name__}, not JSON text")
    try:
        value = json.loads(raw)
    except ValueError:
        raise corrupt(path, f"{where} {name} is not valid JSON ({raw[:60]!r})") from None
    if not isinstance(value, kind):
        raise corrupt(path, f"{where} {name} is a JSON {type(value).__name__}, expected a JSON {kind.__name__}")
    return value


def shown(value) -> str:
    """repr of an attribute value without numpy's wrapping (1.5, not np.float64(1.5))."""
    return repr(value.item() if isinstance(value, np.generic) else value)[:80]


def integer_attr(obj, name: str, path, where: str) -> int:
    raw = obj.attrs.get(name)
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw[()]
    if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (int, np.integer)):
        raise corrupt(path, f"{where} {name} is {shown(raw)}, not an integer")
    return int(raw)


def _dataset(group, name: str, path, where: str):
    import h5py

    item = group.get(name)
    if not isinstance(item, h5py.Dataset):
        raise corrupt(path, f"{where} has no {name} dataset")
    return item


def _is_string(dataset) -> bool:
    import h5py

    return h5py.check_string_dtype(dataset.dtype) is not None


def check_structure(h5, path) -> None:
    """CacheError "corrupt cache: <what>" for the first structural fault found (see the module docstring)."""
    for name in ("dataset", "emo_version", "created"):
        if name in h5.attrs and not isinstance(h5.attrs[name], (str, bytes)):
            raise corrupt(path, f"file attribute {name} is {shown(h5.attrs[name])}, not text")
    import h5py

    table = h5["clips"]
    n = _check_table(table, path)
    for modality in MODALITIES:
        if modality in h5:
            if not isinstance(h5[modality], h5py.Group):
                raise corrupt(path, f"{modality} is a {type(h5[modality]).__name__}, not a group")
            _check_modality(h5[modality], modality, n, path)


def _check_table(table, path) -> int:
    ids = _dataset(table, "id", path, "clip table")
    if ids.ndim != 1 or not _is_string(ids):
        raise corrupt(path, "clip ids are not a 1-D text column")
    n = ids.shape[0]
    for name in TABLE_STRINGS:
        column = _dataset(table, name, path, "clip table")
        if column.shape != (n,) or not _is_string(column):
            raise corrupt(path, f"clip column {name} has shape {column.shape} ({column.dtype}), expected {n} text values")
    for name, kind in TABLE_NUMERIC.items():
        column = _dataset(table, name, path, "clip table")
        if column.shape != (n,) or column.dtype.kind not in (kind + "u" if kind == "i" else kind):
            raise corrupt(path, f"clip column {name} has shape {column.shape} ({column.dtype}), expected {n} values")
    import h5py

    extras = table.get("extras")
    if extras is not None and not isinstance(extras, h5py.Group):
        raise corrupt(path, "clip extras is not a group")
    for name, column in (extras.items() if extras is not None else ()):
        if not isinstance(column, h5py.Dataset):
            raise corrupt(path, f"extras column {name} is not a dataset")
        if column.shape != (n,) or not _is_string(column):
            raise corrupt(path, f"extras column {name} has shape {column.shape}, expected {n} text values")
    names = json_attr(table, "label_names", list, path, "clip table")
    if not all(isinstance(name, str) for name in names):
        raise corrupt(path, f"label_names holds non-text entries ({names[:5]})")
    if len(set(names)) != len(names):
        raise corrupt(path, "label_names repeats a label")
    labels = table["label"][:]
    if n and (labels.min() < 0 or labels.max() >= len(names)):
        bad = int(((labels < 0) | (labels >= len(names))).sum())
        raise corrupt(path, f"{bad} label indices outside the {len(names)} labels")
    id_values = ids[:]
    if len(set(id_values.tolist())) != n:
        raise corrupt(path, "duplicate clip ids in the clip table")
    return n


def _check_modality(group, modality: str, n: int, path) -> None:
    where = f"{modality}"
    data = _dataset(group, "data", path, where)
    json_attr(group, "fingerprint", dict, path, where)
    json_attr(group, "extract_options", dict, path, where, default={})
    row_shape = group.attrs.get("row_shape")
    try:
        row_shape = tuple(int(v) for v in np.atleast_1d(row_shape)) if row_shape is not None else None
    except (TypeError, ValueError):
        row_shape = None
    if row_shape is None or row_shape != tuple(data.shape[1:]):
        raise corrupt(path, f"{where} row_shape {shown(group.attrs.get('row_shape'))} does not match its data {data.shape[1:]}")
    dtype = group.attrs.get("dtype")
    if not isinstance(dtype, (str, bytes)) or (dtype.decode("utf-8", "replace") if isinstance(dtype, bytes) else dtype) != data.dtype.name:
        raise corrupt(path, f"{where} dtype attribute {shown(dtype)} does not match its data ({data.dtype.name})")
    status = _dataset(group, "status", path, where)
    offsets = _dataset(group, "offsets", path, where)
    reason = _dataset(group, "reason", path, where)
    if status.shape != (n,) or status.dtype.kind not in "iu":
        raise corrupt(path, f"{where} status has shape {status.shape} ({status.dtype}) for {n} clips")
    if offsets.shape != (n, 2) or offsets.dtype.kind not in "iu":
        raise corrupt(path, f"{where} offsets have shape {offsets.shape} ({offsets.dtype}) for {n} clips")
    if reason.shape != (n,) or not _is_string(reason):
        raise corrupt(path, f"{where} reasons have shape {reason.shape} for {n} clips")
    codes = status[:]
    unknown = ~np.isin(codes, list(STATUS_NAMES))
    if unknown.any():
        raise corrupt(path, f"{where}: {int(unknown.sum())} clips with an unknown status code ({sorted(set(codes[unknown].tolist()))[:5]})")
    spans = offsets[:][codes == STATUS_OK].astype(np.int64)
    if not len(spans):
        return
    rows = data.shape[0]
    if (spans[:, 0] < 0).any() or (spans[:, 1] <= spans[:, 0]).any():
        raise corrupt(path, f"{where}: {int(((spans[:, 0] < 0) | (spans[:, 1] <= spans[:, 0])).sum())} ok clips with empty or negative spans")
    if spans[:, 1].max() > rows:
        raise corrupt(path, f"{where} offsets point past the end of its data ({int(spans[:, 1].max())} > {rows} rows)")
    ordered = spans[np.argsort(spans[:, 0], kind="stable")]
    if (ordered[1:, 0] < ordered[:-1, 1]).any():
        raise corrupt(path, f"{where}: clip spans overlap")
