"""Scoring files with a fitted run: the run's extractors -> the head's input -> probabilities.

    from emo import predict
    for p in predict("runs/ca", ["clip.mp4"], text="I can't believe you did this again."):
        print(p.file, p.top, p.probabilities)

The head's input is built exactly as `emo fit` built it from the cache: each sequence is
cast to the cached dtype, the layers the run trained on are kept, and batches go through
the same ragged gather (`emo.fusion.data.ModalityData`) and the same inference step
(`emo.fusion.train.infer_probabilities`). A k-fold run averages its fold models' probabilities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from emo.errors import EmoError
from emo.predictor.inputs import ClipArg, ClipFiles, attach_texts, group_files

if TYPE_CHECKING:
    from emo.fusion.data import CachedData


@dataclass
class Prediction:
    files: list[str]  # the clip's files: its video and/or audio file
    probabilities: dict[str, float]  # class -> probability, in the run's class order ({} when it failed)
    top: str | None  # the most probable class (None when it failed)
    missing: list[str] = field(default_factory=list)  # run modalities this clip lacked; scored without them
    reasons: dict[str, str] = field(default_factory=dict)  # why each missing modality is missing
    folds: int = 1  # fold models whose probabilities were averaged
    error: str | None = None  # why the clip could not be scored (only with keep_going=True)
    speaker: str | None = None  # the speaker whose clips set the normalisation statistics (--normalize speaker)

    @property
    def file(self) -> str:
        """The clip as one string: its file, or its files joined by ' + '."""
        return " + ".join(self.files)

    def ranked(self, k: int | None = None) -> list[tuple[str, float]]:
        """(class, probability) pairs, most probable first; the first k when given."""
        order = sorted(self.probabilities.items(), key=lambda item: -item[1])
        return order if k is None else order[:k]

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "file": self.file,
            "files": list(self.files),
            "probabilities": dict(self.probabilities),
            "top": self.top,
            "missing_modalities": list(self.missing),
        }
        if self.reasons:
            row["missing_reasons"] = dict(self.reasons)
        if self.folds > 1:
            row["folds_averaged"] = self.folds
        if self.error is not None:
            row["error"] = self.error
        if self.speaker is not None:
            row["speaker"] = self.speaker
        return row


@dataclass
class _Extracted:
    """One modality of every clip of a call: the head-ready sequence, or why there is none."""

    sequences: list[np.ndarray | None]
    missing: dict[int, str] = field(default_factory=dict)  # clip position -> reason (no such modality)
    failed: dict[int, str] = field(default_factory=dict)  # clip position -> reason (the file could not be read)


class Predictor:
    """A run loaded for scoring: its heads and its checked extractors, built once, reused per call."""

    def __init__(
        self, run: str | Path, device: str | None = None, workers: int | None = None, allow_download: bool = False
    ):
        from emo.extract.options import default_workers
        from emo.fusion import load_run
        from emo.fusion.heads import HEADS
        from emo.accel import resolve_device
        from emo.predictor.extractors import build_checked_extractors, plan_extractors

        started = time.perf_counter()
        self.run = Path(run)
        saved = load_run(self.run)
        record = saved.record
        self.record = record
        self.modalities: list[str] = list(record.modalities)
        self.classes: list[str] = list(record.classes)
        self.device = resolve_device(device)
        self.workers = workers or default_workers()
        # The run is data: its record (load_run) and the backbones it names are checked before anything loads.
        planned = plan_extractors(record, str(self.device), self.run, allow_download)
        self.heads = [head.to(self.device) for head in saved.heads()]
        head_name = record.head["name"]
        self.head_name = head_name
        self.modality_dropout = record.modality_dropout
        head_cls = HEADS.get(head_name)
        # A clip lacking a modality can be scored only by a head that takes absent inputs and
        # that saw them in training (modality dropout hides one modality of some training clips).
        self.absent_ok = bool(head_cls is not None and head_cls.absent_ok and len(self.modalities) > 1)
        self.normalization = record.normalize  # {"mode": "speaker", ...} when fitted with --normalize speaker
        self.extractors = build_checked_extractors(record, str(self.device), self.run, allow_download, planned)
        self._layer_index = self._layer_positions()
        self.load_seconds = time.perf_counter() - started

    @property
    def n_folds(self) -> int:
        return len(self.heads)

    def _layer_positions(self) -> dict[str, list[int] | None]:
        from emo.predictor.extractors import layer_index

        chosen = self.record.cache.layers
        inputs = self.record.head["inputs"]
        positions = {}
        for m, extractor in self.extractors.items():
            spec = inputs[m]
            if spec["kind"] != "features":
                positions[m] = None
            else:
                positions[m] = layer_index(m, extractor.fingerprint(), tuple(extractor.row_shape), chosen.get(m))
            width = tuple(extractor.row_shape) if positions[m] is None else (len(positions[m]), *extractor.row_shape[1:])
            if tuple(width) != tuple(spec["row_shape"]):
                raise EmoError(
                    f"{self.run}: the head takes {m} rows of shape {tuple(spec['row_shape'])}, "
                    f"the extractor gives {tuple(width)}"
                )
        return positions

    # -- one call ---------------------------------------------------------------------------
    def predict(
        self,
        files: Sequence[ClipArg] | ClipArg,
        text: str | Sequence[str | None] | None = None,
        *,
        pair: bool = False,
        keep_going: bool = False,
        batch_size: int = 64,
        speaker: str | None = None,
    ) -> list[Prediction]:
        """Score clips (see `emo.predictor.inputs` for how files become clips).

        A clip that cannot be scored raises EmoError naming its file, or with `keep_going`
        comes back with `error` set while the others are scored. `speaker`: every clip of the
        call is this speaker's; a run fitted with --normalize speaker needs it (and >= 2 clips).
        """
        clips = attach_texts(group_files(files, pair=pair), text)
        self.check_speaker(speaker, len(clips))
        extracted = {m: self._extract(m, clips) for m in self.modalities}
        predictions, scorable = [], []
        for i, clip in enumerate(clips):
            prediction = self._assess(i, clip, extracted)
            if prediction.error is not None and not keep_going:
                raise EmoError(prediction.error)
            predictions.append(prediction)
            if prediction.error is None:
                scorable.append(i)
        if scorable:
            if speaker is not None:
                self.check_speaker(speaker, len(scorable), "could be read")
            probs = self._score(scorable, extracted, batch_size, speaker)
            for row, i in enumerate(scorable):
                values = {c: float(p) for c, p in zip(self.classes, probs[row])}
                predictions[i].probabilities = values
                predictions[i].top = self.classes[int(np.argmax(probs[row]))]
                predictions[i].speaker = speaker
        return predictions

    def check_speaker(self, speaker: str | None, n_clips: int, which: str = "given") -> None:
        check_speaker(self.run, self.normalization, speaker, n_clips, which)

    def _extract(self, modality: str, clips: list[ClipFiles]) -> _Extracted:
        """The encode loop (`encode_clips`, as `emo extract` runs it) -> the run's layers.

        A clip's own problem is recorded (missing / failed) for `_assess`; a BackboneError
        (the run's model itself is broken) stops the call, as it stops `emo extract`.
        """
        from emo.errors import ClipMissing
        from emo.extract.run.encode import batch_budget, encode_clips, failure_reason

        extractor = self.extractors[modality]
        result = _Extracted([None] * len(clips))
        records = [clip.to_clip(i) for i, clip in enumerate(clips)]
        position = {record.id: i for i, record in enumerate(records)}
        todo = []
        for i, record in enumerate(records):
            if modality == "text" and not record.text:
                result.missing[i] = "no transcript given (--text)"
            else:
                todo.append(record)
        keep = self._layer_index[modality]
        budget = batch_budget(extractor, modality)
        for outcomes in encode_clips(extractor, todo, workers=self.workers, budget=budget):
            for outcome in outcomes:
                i = position[outcome.clip.id]
                if isinstance(outcome.error, ClipMissing):
                    result.missing[i] = failure_reason(outcome.error)
                elif outcome.error is not None:
                    result.failed[i] = failure_reason(outcome.error)
                else:  # the cache's own dtype: the head sees what `emo fit` fed it (float16 / uint8)
                    array = outcome.array
                    result.sequences[i] = np.ascontiguousarray(array if keep is None else array[:, keep])
        return result

    def _assess(self, i: int, clip: ClipFiles, extracted: dict[str, _Extracted]) -> Prediction:
        """The clip's Prediction shell: what it lacks, and an error when it cannot be scored."""
        prediction = Prediction(files=clip.files, probabilities={}, top=None, folds=self.n_folds)
        failed = {m: e.failed[i] for m, e in extracted.items() if i in e.failed}
        prediction.reasons = {m: e.missing[i] for m, e in extracted.items() if i in e.missing}
        prediction.missing = list(prediction.reasons)
        if failed:
            prediction.error = f"{clip.name}: " + "; ".join(f"{m}: {r}" for m, r in failed.items())
        elif len(prediction.missing) == len(self.modalities):
            lacks = "; ".join(f"{m}: {r}" for m, r in prediction.reasons.items())
            prediction.error = f"{clip.name}: nothing the run can score ({lacks})"
        elif prediction.missing:
            lacks = "; ".join(f"this clip has no {m}: {r}" for m, r in prediction.reasons.items())
            if self.modality_dropout <= 0:
                prediction.error = f"{clip.name}: the run was trained without --modality-dropout; {lacks}"
            elif not self.absent_ok:
                prediction.error = f"{clip.name}: the {self.head_name} head cannot score a clip with a modality absent; {lacks}"
        return prediction

    def _score(self, rows: list[int], extracted: dict[str, _Extracted], batch_size: int,
               speaker: str | None = None) -> np.ndarray:
        """(len(rows), n_classes) probabilities, the mean over the fold models."""
        from emo.fusion.train import infer_probabilities

        data = self._scoring_data(rows, extracted, speaker)
        if self.normalization is not None:
            from emo.fusion.normalize import speaker_normalized

            data, _ = speaker_normalized(data, self.modalities, f"--speaker {speaker}")
        positions = np.arange(len(rows))
        total = None
        for head in self.heads:
            probs, _ = infer_probabilities(head, data, positions, self.modalities, self.device, batch_size=batch_size)
            total = probs if total is None else total + probs
        return total / len(self.heads)

    def _scoring_data(self, rows: list[int], extracted: dict[str, _Extracted], speaker: str | None = None) -> "CachedData":
        """The scored clips in the in-memory layout `load_data` gives a cache, unlabelled."""
        from emo.fusion.data import CachedData, ModalityData

        inputs = self.record.head["inputs"]
        modalities = {
            m: ModalityData.from_arrays(
                m, inputs[m]["kind"], tuple(inputs[m]["row_shape"]), [extracted[m].sequences[i] for i in rows],
                self.extractors[m].dtype, self.record.cache.fingerprints[m],
                self.record.cache.layers.get(m),
            )
            for m in self.modalities
        }
        return CachedData.unlabelled(
            self.run, modalities, self.classes, speakers=[speaker or ""] * len(rows),
            max_frames=self.record.max_frames,  # as the run was trained and tested: one long file stays bounded
        )


def check_speaker(run, normalization: dict | None, speaker: str | None, n_clips: int, which: str = "given") -> None:
    """Speaker normalisation needs the speaker named and several of their clips: refuse otherwise, saying why."""
    from emo.fusion.normalize import MIN_CLIPS

    if normalization is None:
        if speaker is not None:
            raise EmoError(f"{run}: --speaker {speaker}: the run was fitted without --normalize speaker, "
                           "so there is nothing to standardise per speaker")
        return
    if speaker is None or not str(speaker).strip():
        raise EmoError(f"{run}: fitted with --normalize speaker (features standardised with each speaker's "
                       f"own statistics): pass --speaker NAME with >= {MIN_CLIPS} clips of that one speaker")
    if n_clips < MIN_CLIPS:
        raise EmoError(f"--speaker {speaker}: {n_clips} clip(s) {which}; the speaker's statistics need >= "
                       f"{MIN_CLIPS} clips of that speaker (one clip standardised by itself loses what it carries)")


def predict(
    run: str | Path,
    files: Sequence[ClipArg] | ClipArg,
    text: str | Sequence[str | None] | None = None,
    device: str | None = None,
    *,
    pair: bool = False,
    keep_going: bool = False,
    speaker: str | None = None,
    allow_download: bool = False,
) -> list[Prediction]:
    """Emotion probabilities of clips under a fitted run (`emo fit --out RUN`).

    files: paths (each file one clip; a video and an audio file with the same stem form one
    clip) or (video, audio) tuples; text: a transcript for one clip, or one per clip. The run's
    extractors are built once for the call and checked against its recorded fingerprints.
    For many calls build a `Predictor(run)` once and call its `predict`. Nothing is downloaded
    unless `allow_download` (a run's hub backbones must already be in the local hub cache).
    """
    return Predictor(run, device=device, allow_download=allow_download).predict(files, text, pair=pair, keep_going=keep_going, speaker=speaker)
