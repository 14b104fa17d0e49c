"""`emo extract` as a library: dataset -> extractors -> resumable HDF5 cache.

For each modality the runner compares the extractor's fingerprint with the cache's
(`CacheWriter.open_modality`: kept / new / rebuilt), takes the clips still pending, runs them
through the encode loop (`emo.extract.run.encode.encode_clips`: prepared on CPU threads ahead of
the encoder, batches cut by cost, cast as stored) and writes each batch atomically. A killed
run therefore resumes after its last written batch, and a clip that fails is recorded
(status + reason) while the run carries on. Only a broken backbone (BackboneError, at load
or while encoding) or a bad dataset/cache stops the run.

The entry point, `emo.extract.run_extraction`, runs it in one process (`run_single_process`)
or, under torchrun (WORLD_SIZE > 1), hands over to emo.extract.run.distributed: one shard per
process, merged into the cache by rank 0. Neither this module nor distributed imports the
entry point: the dependencies run one way (entry -> distributed -> runner).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping, Sequence

from emo.accel import resolve_device
from emo.clip import Clip
from emo.errors import BackboneError, CacheError, ClipError
from emo.extract.run.batching import batching_order, with_probed_durations
from emo.extract.run.encode import batch_budget, encode_clips, failure_reason
from emo.extract.options import EXTRACT_MODALITIES, ExtractOptions, default_workers, extract_options_for

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

    from emo.cache import CacheWriter
    from emo.cache.clip_table import TableChanges
    from emo.extract.base import Extractor
    from emo.extract.datasets import DatasetScan

MAX_REASONS_KEPT = 5


@dataclass
class ModalityExtraction:
    """What one `emo extract` run did for one modality (not what a cache holds: emo.cache.inspect)."""

    modality: str
    backbone: str
    action: str  # what the cache did with this modality: "new" | "kept" | "rebuilt"
    clips: int  # clips this run covered
    extracted: int  # sequences written by this run
    kept: int  # sequences already in the cache (same fingerprint), not recomputed
    missing: int  # clips without this modality (all runs)
    failed: int  # clips that failed (all runs)
    reasons: list[str] = field(default_factory=list)  # "clip: reason" for the first few missing/failed
    seconds: float = 0.0
    retried: int = 0  # failed clips turned back to pending by --retry-failed


@dataclass
class ExtractionSummary:
    dataset: str
    cache_path: Path
    clips: int  # clips this run covered (the shard's, when sharded)
    shard: tuple[int, int] | None
    skipped: int  # files the dataset adapter skipped
    skipped_reasons: list[str]
    modalities: list[ModalityExtraction]
    processes: int = 1  # torchrun's WORLD_SIZE: how many processes shared the work
    rank: int = 0  # this process's rank (only rank 0 reports)
    table: "TableChanges | None" = None  # what a rerun changed in the cache's clip table

    @property
    def any_ok(self) -> bool:
        """True when at least one modality holds at least one sequence: the run was not in vain."""
        return any(m.extracted + m.kept > 0 for m in self.modalities)


# -- choosing what to extract ---------------------------------------------------------
def available_modalities(clips: Sequence[Clip]) -> list[str]:
    """The default --modalities: audio if clips have audio or video, text if transcripts, faces if video.

    A video's audio track is what the audio extractor decodes; a video without one is
    recorded `missing` for audio, which says exactly what is there.
    """
    found = []
    if any(c.audio or c.video for c in clips):
        found.append("audio")
    if any(c.text or "text" in c.problems for c in clips):
        found.append("text")
    if any(c.video for c in clips):
        found.append("faces")
    return found


def shard_clips(clips: Sequence[Clip], shard: tuple[int, int] | None) -> list[Clip]:
    """Shard I/N: the clips whose position in the id-sorted list is I modulo N.

    Deterministic for a given dataset, disjoint across I, covering for I = 0..N-1, and
    interleaved so each shard gets a similar mix of speakers and lengths.
    """
    if shard is None:
        return list(clips)
    index, count = shard
    ordered = sorted(clips, key=lambda c: c.id)
    return [c for i, c in enumerate(ordered) if i % count == index]


def build_extractor(modality: str, options: ExtractOptions, device: str) -> "Extractor":
    """The extractor for one modality; BackboneError when its backbone cannot load."""
    if modality != "faces":  # every other extractor may load a Hugging Face model
        _quiet_model_loading()
    if modality == "audio":
        from emo.extract.encoders.audio_backbones import make_audio_extractor

        return make_audio_extractor(
            options.audio_backbone, device=device, **_given(layers=options.audio_layers, input_mode=options.whisper_input)
        )
    if modality == "text":
        from emo.extract.encoders.text_backbone import make_text_extractor

        return make_text_extractor(options.text_backbone, device=device, **_given(layers=options.text_layers))
    if modality == "faces":
        from emo.extract.decode.faces import FacesExtractor

        return FacesExtractor(device=device, **_face_settings(options))
    if modality == "visual":
        from emo.extract.encoders.image_backbone import make_visual_extractor

        return make_visual_extractor(options.visual_backbone, device=device, **_face_settings(options))
    raise ValueError(f"unknown modality {modality!r} (one of {', '.join(EXTRACT_MODALITIES)})")


def _quiet_model_loading() -> None:
    # transformers 5 draws a "Loading weights" bar per model, between our own progress bars.
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def build_extractors(modalities: Sequence[str], options: ExtractOptions, device: str) -> dict[str, "Extractor"]:
    """Every backbone loads before any work starts: a typo in the last one fails in seconds, not hours in."""
    extractors = {}
    for modality in modalities:
        try:
            extractors[modality] = build_extractor(modality, options, device)
        except ValueError as err:  # settings the extractor refuses (e.g. a layer spec it cannot parse)
            raise BackboneError(f"{modality} extractor: {err}") from None
    return extractors


def _given(**settings: Any) -> dict[str, Any]:
    # Only what the user set: each extractor keeps its own defaults (and records them in its fingerprint).
    return {k: v for k, v in settings.items() if v is not None}


def _face_settings(options: ExtractOptions) -> dict[str, Any]:
    return _given(fps=options.fps, frames=options.frames, face_size=options.face_size)


# -- one process ---------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractionRequest:
    """Everything one `emo extract` asks for, as `emo.extract.run_extraction` takes it (see there)."""

    dataset: str
    root: str | Path
    cache_path: str | Path
    modalities: Sequence[str] | None = None  # None: what the dataset has
    options: ExtractOptions = field(default_factory=ExtractOptions)
    shard: tuple[int, int] | None = None
    force: bool = False
    retry_failed: bool = False
    progress: bool = True
    console: "Console | None" = None
    dataset_options: Mapping[str, Any] | None = None

    @property
    def report_console(self) -> "Console | None":
        """Where scan messages go; None for a library caller with progress=False and no console (wants quiet)."""
        return _console(self.console) if self.progress or self.console is not None else None


def run_single_process(request: ExtractionRequest) -> ExtractionSummary:
    """`emo extract` in this process alone: the whole dataset, or its shard `request.shard`."""
    scan, skipped = scan_dataset(request.dataset, request.root, request.dataset_options, request.report_console)
    clips = shard_clips(scan.clips, request.shard)
    wanted = choose_modalities(scan.clips, request.modalities, request.root, request.dataset)
    options = request.options
    extractors = build_extractors(wanted, options, str(resolve_device(options.device)))
    table: list = []
    results = extract_into_cache(
        clips,
        request.cache_path,
        extractors,
        dataset=request.dataset,
        label_names=scan.label_names,
        force=request.force,
        retry_failed=request.retry_failed,
        extract_options={m: extract_options_for(m, options) for m in extractors},
        workers=options.workers,
        budgets={"audio": options.batch_seconds},
        progress=request.progress,
        console=request.console,
        drop_absent=request.shard is None,  # a shard run sees only part of the dataset: drop nothing
        on_table=table.append,
    )
    return ExtractionSummary(
        dataset=request.dataset,
        cache_path=Path(request.cache_path),
        clips=len(clips),
        shard=request.shard,
        skipped=len(skipped),
        skipped_reasons=skipped[:MAX_REASONS_KEPT],
        modalities=results,
        table=table[0] if table else None,
    )


def scan_dataset(
    dataset: str, root: str | Path, dataset_options: Mapping[str, Any] | None, console: "Console | None"
) -> tuple["DatasetScan", list[str]]:
    """The adapter's scan and its skipped files as "path: reason" lines (printed on `console` when given)."""
    from rich.text import Text

    from emo.extract.datasets import load_clips
    from emo.extract.run.summary import skipped_line

    scan = load_clips(dataset, root, **dict(dataset_options or {}))
    skipped = [_skip_text(s) for s in scan.skipped]
    if skipped and console is not None:
        console.print(Text(skipped_line(len(skipped), skipped), style="yellow"), highlight=False)
    return scan, skipped


def choose_modalities(clips: Sequence[Clip], modalities: Sequence[str] | None, root: str | Path, dataset: str) -> list[str]:
    """The modalities asked for, else what the clips have; CacheError when there is nothing to extract."""
    wanted = list(modalities) if modalities else available_modalities(clips)
    if not wanted:
        raise CacheError(f"{root}: the {dataset} clips have no audio, text or video to extract")
    return wanted


def _skip_text(entry: Any) -> str:
    if isinstance(entry, (tuple, list)):
        return ": ".join(str(part) for part in entry)
    return str(entry)


def _console(console: "Console | None") -> "Console":
    if console is not None:
        return console
    from rich.console import Console

    return Console(stderr=True)


# -- the engine: clips + extractors -> cache ------------------------------------------------
def extract_into_cache(
    clips: Sequence[Clip],
    cache_path: str | Path,
    extractors: Mapping[str, "Extractor"],
    *,
    dataset: str,
    label_names: Sequence[str] | None = None,
    force: bool = False,
    retry_failed: bool = False,
    skip: Mapping[str, Collection[str]] | None = None,
    extract_options: Mapping[str, dict] | None = None,
    workers: int | None = None,
    budgets: Mapping[str, float] | None = None,
    progress: bool = True,
    console: "Console | None" = None,
    drop_absent: bool = False,
    on_table: "Callable[[TableChanges], Any] | None" = None,
) -> list[ModalityExtraction]:
    """Write every pending clip of each extractor's modality into the cache; resumable, per-clip failures recorded.

    retry_failed: failed clips are turned back to pending first. skip: per modality, clip ids
    left pending here because another cache already settled them (torchrun ranks skip what the
    target cache holds). extract_options: per modality, how its extractor was asked for
    (`extract_options_for`), recorded with the modality so `emo predict` can rebuild it.
    drop_absent: `clips` is the whole dataset; cached clips not in it are dropped. on_table:
    called with the clip-table changes of a rerun (updated metadata, media to extract again).
    """
    from emo.cache import CacheReader, CacheWriter
    from emo.extract.run.summary import extraction_progress

    if not clips:
        raise CacheError(f"{cache_path}: no clips to extract")
    check_same_dataset(Path(cache_path), dataset)
    workers = workers or default_workers()
    clips = with_probed_durations(clips, workers)
    by_id = {c.id: c for c in clips}
    timings: dict[str, tuple[str, str, int, float, int]] = {}
    with CacheWriter(cache_path, dataset=dataset, clips=clips, label_names=label_names, drop_absent=drop_absent) as writer:
        if on_table is not None:
            on_table(writer.table_changes)
        with extraction_progress(_console(console) if progress else None, progress) as bars:
            for modality, extractor in extractors.items():
                started = time.perf_counter()
                fingerprint = extractor.fingerprint()
                action = writer.open_modality(
                    modality, fingerprint, tuple(extractor.row_shape), extractor.dtype, force=force,
                    options=(extract_options or {}).get(modality),
                )
                retried = writer.retry_failed(modality) if retry_failed else 0
                settled = set((skip or {}).get(modality, ()))
                todo = batching_order([by_id[c] for c in writer.pending(modality) if c in by_id and c not in settled])
                todo = _record_known_problems(writer, modality, todo)
                task = bars.add_task(modality, total=len(todo))
                budget = batch_budget(extractor, modality, (budgets or {}).get(modality))
                extracted = _extract_modality(
                    writer, modality, extractor, todo, workers, budget, lambda n, t=task: bars.advance(t, n)
                )
                timings[modality] = (
                    _backbone_name(fingerprint, extractor), action, extracted, time.perf_counter() - started, retried
                )
    reader = CacheReader(cache_path)
    return [summarise_modality(reader, list(by_id), m, *timings[m]) for m in extractors]


def check_same_dataset(path: Path, dataset: str) -> None:
    """CacheError when the cache at `path` (if any) was written for another dataset."""
    if not (path.exists() and path.stat().st_size > 0):
        return
    from emo.cache import CacheReader

    held = CacheReader(path).dataset
    if held and held != dataset:
        raise CacheError(f"{path}: this cache holds dataset {held!r}, not {dataset!r}; write to another file")


def _backbone_name(fingerprint: Mapping[str, Any], extractor: Any) -> str:
    for key in ("backbone", "name", "model"):
        if isinstance(fingerprint.get(key), str):
            return fingerprint[key]
    return getattr(extractor, "name", type(extractor).__name__)


def _extract_modality(
    writer: "CacheWriter",
    modality: str,
    extractor: "Extractor",
    todo: Sequence[Clip],
    workers: int,
    budget: float,
    advance,
) -> int:
    """The encode loop (`encode_clips`) into the cache, batch by batch; returns how many sequences were written."""
    written = 0
    for outcomes in encode_clips(extractor, todo, workers=workers, budget=budget):
        sequences: dict[str, np.ndarray] = {}
        for outcome in outcomes:
            if outcome.error is not None:
                _record_failure(writer, modality, outcome.clip, outcome.error)
            else:
                sequences[outcome.clip.id] = outcome.array
        writer.write(modality, sequences)  # atomic: the whole batch is visible or none of it
        written += len(sequences)
        advance(len(outcomes))
    return written


def _record_known_problems(writer: "CacheWriter", modality: str, todo: Sequence[Clip]) -> list[Clip]:
    """Clips whose adapter already found this input unusable fail with its reason, not a guessed one."""
    for clip in todo:
        if modality in clip.problems:
            writer.fail(modality, clip.id, clip.problems[modality])
    return [clip for clip in todo if modality not in clip.problems]


def _record_failure(writer: "CacheWriter", modality: str, clip: Clip, error: BaseException) -> None:
    # An unexpected error in one clip (decoder bug, odd file) is recorded as failed with its type; the run goes on.
    status = error.status if isinstance(error, ClipError) else "failed"
    writer.fail(modality, clip.id, failure_reason(error), status=status)


def summarise_modality(
    reader, run_ids: Sequence[str], modality: str, backbone: str, action: str, extracted: int, seconds: float,
    retried: int = 0,
) -> ModalityExtraction:
    """Counts over this run's clips only (a cache may hold more: another root, earlier shards)."""
    import numpy as np

    from emo.cache import STATUS_FAILED, STATUS_MISSING, STATUS_NAMES, STATUS_OK

    rows = reader.clips.index(run_ids)
    all_codes, all_reasons = reader.status(modality)
    codes = all_codes[rows]
    unfinished = rows[(codes == STATUS_MISSING) | (codes == STATUS_FAILED)]
    return ModalityExtraction(
        modality=modality,
        backbone=backbone,
        action=action,
        clips=len(rows),
        extracted=extracted,
        kept=int(np.count_nonzero(codes == STATUS_OK)) - extracted,
        missing=int(np.count_nonzero(codes == STATUS_MISSING)),
        failed=int(np.count_nonzero(codes == STATUS_FAILED)),
        reasons=[
            f"{reader.clips.ids[i]} ({STATUS_NAMES[int(all_codes[i])]}): {all_reasons[i]}" for i in unfinished[:MAX_REASONS_KEPT]
        ],
        seconds=seconds,
        retried=retried,
    )
