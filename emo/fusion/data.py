"""The cache in memory: every selected modality read once, batched by index with masks.

Each modality stays ragged in memory: one flat `(rows, *row_shape)` tensor plus each clip's
start and length, as the cache stores it (no padding to the longest clip).

The ragged index has three encodings, each under its own name: on disk `offsets` (N, 2), each
clip's [start, end) span (emo.cache.writer); `Sequences.bounds` (N + 1,), cumulative boundaries
of a contiguous array (what CacheReader.load returns); and here `starts` + `lengths`, (N,) each,
where a clip without frames has length 0 and start 0 (so a gather never reads past the end). A batch is
one gather `data[start + min(t, length - 1)]` over (clips, frames) and a mask `t < length`;
the heads ignore frames outside the mask. No file I/O and no DataLoader in the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from emo.errors import EmoError
from emo.layer_spec import select_layers

# Fraction of free GPU memory the cached tensors may take; the rest is for the model and activations.
GPU_SHARE = 0.6
# Most frames of one clip that a head sees (per input), in training and in scoring: one long file
# (a 10-minute recording is 30000 frames at 50 Hz) must not make a batch pad every clip to it and
# attend over all of it (100+ GB). Longer clips are cropped: a random window per step in training,
# the centred window in scoring. 3000 frames = 60 s at 50 Hz, 30 s at 100 Hz: no effect on the
# utterance-level corpora emo targets. FitOptions.max_frames sets it per run (recorded in config.json).
DEFAULT_MAX_FRAMES = 3000


@dataclass
class ModalityData:
    """One modality of every loaded clip: flat rows, per-clip start/length, presence."""

    name: str
    kind: str  # "features" (float16 (L, D) rows) or "faces" (uint8 (S, S, 3) rows)
    row_shape: tuple
    data: "torch.Tensor"  # (rows, *row_shape) on the storage device
    starts: "torch.Tensor"  # (N,) int64, on the storage device
    lengths: np.ndarray  # (N,) int64 on the host (0: the clip has no sequence here)
    fingerprint: dict
    layers: list | None  # cached layer ids kept (None: every cached layer)

    @classmethod
    def from_arrays(
        cls,
        name: str,
        kind: str,
        row_shape: tuple,
        sequences: Sequence[np.ndarray | None],
        dtype: str,
        fingerprint: dict,
        layers: list | None = None,
    ) -> "ModalityData":
        """The in-memory layout of per-clip arrays (None: that clip has no sequence here), on the host.

        What `load_data` builds from a cache, built from sequences that never were in one
        (`emo predict`'s freshly encoded clips). `dtype` is the flat array's when no clip has one.
        """
        import torch

        lengths = np.array([0 if s is None else len(s) for s in sequences], dtype=np.int64)
        starts = np.zeros(len(lengths), dtype=np.int64)
        starts[1:] = np.cumsum(lengths)[:-1]
        starts[lengths == 0] = 0  # as load_data: a clip without frames gathers (masked) row 0, never past the end
        present = [s for s in sequences if s is not None]
        flat = np.concatenate(present) if present else np.zeros((0, *row_shape), dtype=dtype)
        return cls(
            name=name,
            kind=kind,
            row_shape=tuple(row_shape),
            data=torch.from_numpy(np.ascontiguousarray(flat)),
            starts=torch.from_numpy(starts),
            lengths=lengths,
            fingerprint=fingerprint,
            layers=layers,
        )

    @property
    def present(self) -> np.ndarray:
        return self.lengths > 0

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def gather(
        self, rows: np.ndarray, max_frames: int | None = None, where: np.ndarray | None = None
    ) -> tuple["torch.Tensor", "torch.Tensor"]:
        """(x (B, T, *row_shape), mask (B, T)) for clip rows, T = longest clip of the batch.

        A clip longer than `max_frames` gives a window of that many frames, starting at `where`
        (per clip, a fraction in [0, 1) of the frames it can skip; training draws it at random),
        else the centred window (scoring).
        """
        import torch

        lengths = self.lengths[rows]
        skip = np.zeros(len(rows), dtype=np.int64)
        if max_frames is not None and (lengths > max_frames).any():
            over = np.maximum(lengths - max_frames, 0)
            skip = over // 2 if where is None else np.minimum(np.floor(where * (over + 1)).astype(np.int64), over)
            lengths = lengths - over
        t_max = max(int(lengths.max()), 1)
        device = self.data.device
        lengths_t = torch.from_numpy(lengths).to(device, non_blocking=True)
        rows_t = torch.from_numpy(np.ascontiguousarray(rows)).to(device, non_blocking=True)
        skip_t = torch.from_numpy(skip).to(device, non_blocking=True)
        position = torch.arange(t_max, device=device)
        last = (lengths_t - 1).clamp(min=0)
        first = self.starts[rows_t] + skip_t
        frame = first.unsqueeze(1) + torch.minimum(position.unsqueeze(0), last.unsqueeze(1))
        if self.data.shape[0] == 0:  # no clip has this modality: nothing to gather
            x = self.data.new_zeros((len(rows), t_max, *self.row_shape))
        else:
            x = self.data[frame]
        mask = position.unsqueeze(0) < lengths_t.unsqueeze(1)
        return x, mask


@dataclass
class CachedData:
    """Labels, clip metadata and the selected modalities of one cache, all in memory."""

    path: Path
    dataset: str
    ids: list[str]
    labels: np.ndarray | None  # (N,) int64 index into class_names; None: clips to score, no labels (`unlabelled`)
    class_names: list[str]
    label_column: str | None
    speakers: np.ndarray  # (N,) object
    durations: np.ndarray  # (N,) float32 seconds, nan unknown
    texts: list[str]
    extras: dict[str, list[str]]
    modalities: dict[str, ModalityData] = field(default_factory=dict)
    max_frames: int | None = DEFAULT_MAX_FRAMES  # frames per clip and input a batch holds (None: all)

    @classmethod
    def unlabelled(
        cls,
        source: Path,
        modalities: Mapping[str, ModalityData],
        class_names: Sequence[str],
        speakers: Sequence[str] | None = None,
        max_frames: int | None = DEFAULT_MAX_FRAMES,
    ) -> "CachedData":
        """Clips to score, without labels or a cache behind them (`emo predict`): the modalities (each
        of the same N clips, e.g. `ModalityData.from_arrays`), the classes a head answers in, and each
        clip's speaker when the head needs per-speaker statistics. Clips are named by position."""
        n = len(next(iter(modalities.values())).lengths) if modalities else 0
        return cls(
            path=Path(source), dataset="", ids=[str(i) for i in range(n)], labels=None, class_names=list(class_names),
            label_column=None, speakers=np.array(list(speakers) if speakers is not None else [""] * n, dtype=object),
            durations=np.full(n, np.nan, dtype=np.float32), texts=[""] * n, extras={}, modalities=dict(modalities),
            max_frames=max_frames,
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.modalities.values())

    def inputs(self, keys: Sequence[str]) -> dict:
        from emo.fusion.heads import InputSpec
        from emo.fusion.heads.registry import frame_rate

        return {
            k: InputSpec(k, self.modalities[k].kind, self.modalities[k].row_shape, frame_rate(self.modalities[k].fingerprint))
            for k in keys
        }

    def rows_with(self, keys: Sequence[str], allow_missing: bool = False) -> np.ndarray:
        """Rows present in every modality of `keys` (or in at least one when `allow_missing`)."""
        present = np.stack([self.modalities[k].present for k in keys])
        keep = present.any(axis=0) if allow_missing else present.all(axis=0)
        return np.flatnonzero(keep)

    def frame_counts(self, key: str) -> np.ndarray:
        return self.modalities[key].lengths

    def batch_frames(self, keys: Sequence[str]) -> np.ndarray:
        """(N,) frames of each clip's longest input as a batch holds it (cropped to max_frames): what it pads to."""
        longest = np.max(np.stack([self.modalities[k].lengths for k in keys]), axis=0)
        return longest if self.max_frames is None else np.minimum(longest, self.max_frames)

    def batch(
        self,
        rows: np.ndarray,
        keys: Sequence[str],
        device,
        masked_out: Mapping[str, np.ndarray] | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict:
        """{key: (x, mask)} on `device` for these rows; `masked_out[key]` (B,) bool hides a modality per clip.

        Each input holds at most `max_frames` frames per clip (random windows with `rng`, else centred).
        """
        import torch

        where = None
        if rng is not None and self.max_frames is not None and any((self.modalities[k].lengths[rows] > self.max_frames).any() for k in keys):
            # One position per clip for all its inputs, so their windows cover the same stretch of the clip.
            # Drawn only when some clip is cropped: other batches leave the random stream as it was.
            where = rng.random(len(rows))
        batch = {}
        for key in keys:
            x, mask = self.modalities[key].gather(rows, self.max_frames, where)
            if masked_out is not None and key in masked_out:
                hide = torch.from_numpy(masked_out[key]).to(mask.device)
                mask = mask & ~hide.unsqueeze(1)
            batch[key] = (x.to(device, non_blocking=True), mask.to(device, non_blocking=True))
        return batch


# -- loading ------------------------------------------------------------------------------
def resolve_layers(spec: str | list | None, stored: list, modality: str) -> list | None:
    """A layer spec (emo/layer_spec.py) or a run's recorded ids -> stored layer ids (None = all)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return None
    return select_layers(spec, stored, f"--layers {spec}: {modality} ", f"is not cached (cached layers: {stored})")


def _labels(reader, label_column: str | None, classes: Sequence[str] | None, strict_classes: bool):
    """(labels (N,) with -1 = not used, class names) from the default label or an extras column."""
    table = reader.clips
    if label_column in (None, "", "label"):
        names = list(table.label_names)
        values = np.asarray(table.labels, dtype=np.int64)
    else:
        if label_column not in table.extras:
            known = ", ".join(sorted(table.extras)) or "none"
            raise EmoError(f"{reader.path}: no label column {label_column!r} (clip columns: label, {known})")
        column = [v.strip() for v in table.extras[label_column]]
        names = sorted({v for v in column if v})
        lookup = {n: i for i, n in enumerate(names)}
        values = np.array([lookup.get(v, -1) for v in column], dtype=np.int64)
    if classes:
        unknown = [c for c in classes if c not in names]
        if unknown and strict_classes:
            raise EmoError(f"{reader.path}: unknown class(es) {unknown} (classes here: {', '.join(names)})")
        remap = np.full(len(names) + 1, -1, dtype=np.int64)  # last slot maps -1 to -1
        for new, name in enumerate(classes):
            if name in names:
                remap[names.index(name)] = new
        values = remap[values]
        names = list(classes)
    return values, names


def modality_kind(reader, modality: str) -> str:
    info = reader.info(modality)
    return "faces" if info.dtype == "uint8" and len(info.row_shape) == 3 else "features"


def load_data(
    cache: str | Path,
    modalities: Sequence[str],
    *,
    layers: Mapping[str, str | list | None] | None = None,
    label_column: str | None = None,
    classes: Sequence[str] | None = None,
    strict_classes: bool = True,
    clip_ids: Sequence[str] | None = None,
    device="cpu",
    reader=None,
) -> CachedData:
    """Read `modalities` of every labelled clip (ok in at least one of them) into memory, once.

    `device` is where training runs: on a GPU the tensors go there when they fit in GPU_SHARE of
    its free memory, otherwise they stay in pinned host memory and each batch is copied over.
    """
    import torch

    from emo.cache import CacheReader

    reader = reader or CacheReader(cache)
    missing = [m for m in modalities if m not in reader.modalities]
    if missing:
        present = ", ".join(reader.modalities) or "none"
        raise EmoError(f"{reader.path}: no {', '.join(missing)} modality in this cache (it holds: {present})")
    if not modalities:
        raise EmoError(f"{reader.path}: no modality selected")
    labels, class_names = _labels(reader, label_column, classes, strict_classes)
    table = reader.clips
    wanted = labels >= 0
    if clip_ids is not None:
        chosen = np.zeros(len(table.ids), dtype=bool)
        chosen[table.index(list(clip_ids))] = True
        wanted &= chosen
    ok = {m: np.asarray(reader.status(m)[0]) == 1 for m in modalities}
    keep = np.flatnonzero(wanted & np.any(np.stack(list(ok.values())), axis=0))
    if keep.size == 0:
        raise EmoError(f"{reader.path}: no labelled clip has any of {', '.join(modalities)}")

    layers = dict(layers or {})
    loaded: dict[str, tuple] = {}
    for m in modalities:
        kind = modality_kind(reader, m)
        chosen_layers = None
        if kind == "features":
            chosen_layers = resolve_layers(layers.get(m), reader.layer_ids(m), m)
        elif layers.get(m) not in (None, "all"):
            raise EmoError(f"--layers: {m} holds face crops, not layers")
        rows_here = keep[ok[m][keep]]
        seqs = reader.load(m, clips=[table.ids[i] for i in rows_here], layers=chosen_layers)
        lengths = np.zeros(keep.size, dtype=np.int64)
        starts = np.zeros(keep.size, dtype=np.int64)
        position = np.searchsorted(keep, rows_here)
        lengths[position] = seqs.lengths
        starts[position] = seqs.bounds[:-1]  # cumulative boundaries: all but the last are the starts
        loaded[m] = (kind, seqs.data, starts, lengths, reader.fingerprint(m), chosen_layers)

    total = sum(item[1].nbytes for item in loaded.values())
    storage = _storage_device(torch.device(device), total)
    modality_data = {}
    for m, (kind, data, starts, lengths, fingerprint, chosen_layers) in loaded.items():
        tensor = torch.from_numpy(np.ascontiguousarray(data))
        if storage.type == "cuda":
            tensor = tensor.to(storage)
        elif torch.device(device).type == "cuda":
            tensor = tensor.pin_memory()
        modality_data[m] = ModalityData(
            name=m,
            kind=kind,
            row_shape=tuple(data.shape[1:]),
            data=tensor,
            starts=torch.from_numpy(starts).to(storage),
            lengths=lengths,
            fingerprint=fingerprint,
            layers=chosen_layers,
        )
    return CachedData(
        path=Path(reader.path).resolve(),
        dataset=reader.dataset,
        ids=[table.ids[i] for i in keep],
        labels=labels[keep],
        class_names=list(class_names),
        label_column=None if label_column in (None, "", "label") else label_column,
        speakers=np.array([table.speakers[i] for i in keep], dtype=object),
        durations=np.asarray(table.durations, dtype=np.float32)[keep],
        texts=[table.texts[i] for i in keep],
        extras={name: [values[i] for i in keep] for name, values in table.extras.items()},
        modalities=modality_data,
    )


def _storage_device(device, nbytes: int):
    import torch

    if device.type != "cuda":
        return torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes < GPU_SHARE * free else torch.device("cpu")
