"""The run's extractors, rebuilt and checked against the fingerprints recorded at training.

A head only knows the features it was trained on. So for every modality the run reads,
`emo predict` builds the extractor the cache was built with and compares its fingerprint
with the one the run recorded: any difference (other weights, layers, frame sampling, crop
size, feature library version) is refused with the field that changed.

The extractor is rebuilt from the options the extraction recorded, which `emo fit` copies
from the cache into the run's config.json (`cache.extract_options`): a run needs nothing but
its own directory, and its training cache may be deleted. The fingerprint check decides.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from emo.errors import EmoError

if TYPE_CHECKING:
    from emo.fusion.run_record import RunRecord

# Why a changed fingerprint field matters, for the refusal message; anything else is a setting.
FIELD_MEANING = {
    "revision": "the backbone's weights changed since training",
    "detector_sha256": "the face detector's weights changed since training",
    "library_version": "the feature library's version changed since training",
    "backbone": "another backbone than the one the run was trained on",
    "layers": "other hidden layers than at training",
}


# The ExtractOptions fields that define an extractor (what a run may record); anything else
# (device, workers, batch sizes) is this machine's business, never taken from a run.
EXTRACTOR_FIELDS = frozenset({
    "audio_backbone", "audio_layers", "whisper_input", "text_backbone", "text_layers", "visual_backbone",
    "fps", "frames", "face_size",
})
BACKBONE_FIELD = {"audio": "audio_backbone", "text": "text_backbone", "visual": "visual_backbone"}
# A Hugging Face repo id: [owner/]name of letters, digits, '-', '_', '.', no '..' or '--'.
HUB_ID = re.compile(r"(?!.*(\.\.|--))[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def recorded_options(record, modalities: list[str], run: str | Path) -> dict[str, dict]:
    """{modality: the extract options the run recorded (`emo fit` copies them from its cache)}.

    The run's record alone: the training cache may be gone, moved or rebuilt with other settings
    since, and a fingerprint does not say how its extractor was asked for. A run without the
    record (fitted by an older emo, or on a cache extracted before emo recorded options) is refused.
    """
    recorded = record.cache.extract_options
    lacking = [m for m in modalities if not recorded.get(m)]
    if lacking:
        raise EmoError(
            f"{run}: config.json records no extract options for {', '.join(lacking)} (fitted by an older emo, or on a "
            "cache extracted before emo recorded them), so its extractors cannot be rebuilt: refit it "
            "(on a cache re-extracted with this emo if that is why)"
        )
    return {m: dict(recorded[m]) for m in modalities}


def extract_options(modality: str, recorded: Mapping[str, Any], device: str):
    """The ExtractOptions that rebuild `modality`'s extractor from the run's recorded options.

    Recorded values are `extract_options_for`'s (None = the extractor's default); only the fields
    that define an extractor are taken from the run, never how this machine runs it.
    """
    from emo.extract.options import ExtractOptions

    fields = {f.name for f in dataclasses.fields(ExtractOptions)}
    values = {k: v for k, v in recorded.items() if k in EXTRACTOR_FIELDS and k in fields and v is not None}
    values["device"] = device
    try:
        return ExtractOptions(**values)
    except (TypeError, ValueError) as err:
        raise EmoError(f"{modality}: cannot rebuild the extractor options the run was trained with ({err})") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 26 else text[:20] + "..'"


def describe_changes(trained: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """'revision 'sha256:ab..' -> 'sha256:cd..': the backbone's weights changed since training', or None."""
    from emo.cache import differences

    # differences() writes one "field: old -> new" line per changed top-level field.
    changed = [line.split(": ", 1)[0] for line in differences(dict(trained), dict(current))]
    if not changed:
        return None
    parts = [f"{key} {_short(trained.get(key, '<absent>'))} -> {_short(current.get(key, '<absent>'))}" for key in changed]
    meaning = next((FIELD_MEANING[k] for k in FIELD_MEANING if k in changed), "the extractor's settings differ from training")
    if "revision" in changed and trained.get("kind") == "builtin":
        meaning = "the feature library's version changed since training"
    return f"{', '.join(parts)}: {meaning}"


def _builtin_backbones() -> set[str]:
    from emo.extract.encoders.audio_classic import BUILTIN_AUDIO
    from emo.extract.encoders.hub import BUNDLED
    from emo.extract.encoders.whisper_builtin import BUILTIN_WHISPER

    return {*BUILTIN_AUDIO, *BUILTIN_WHISPER, *BUNDLED}


def check_backbone(modality: str, options, fingerprint: Mapping[str, Any], allow_download: bool, run) -> None:
    """Refuse, before anything is read or loaded, a backbone that a run names but must not make emo use.

    The run's record decides what is built, so it is checked like user input: the recorded options
    must name the fingerprint's own backbone; a local folder must be a model folder (config.json
    at its top: emo never hashes an arbitrary directory a run points at); a hub id must be a valid
    repo id, already in the local hub cache (nothing is downloaded unless `allow_download`), at
    the snapshot the run was trained on.
    """
    field = BACKBONE_FIELD.get(modality)
    if field is None:  # face crops: the detector ships with emo and is checked by its sha256
        return
    name = getattr(options, field)
    trained = fingerprint.get("backbone")
    where = f"{run}: {modality} backbone {name!r}"
    if not isinstance(name, str) or not name.strip():
        raise EmoError(f"{where}: not a backbone name")
    if trained is not None and name != trained:
        raise EmoError(f"{where}: the run's recorded options name another backbone than its fingerprint ({trained!r})")
    if name in _builtin_backbones():
        return
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise EmoError(f"{where}: not a model folder (no config.json at its top); refusing to read it")
        return
    if folder.exists():
        raise EmoError(f"{where}: is a file, not a model folder")
    if not HUB_ID.fullmatch(name):
        if name.startswith(("/", ".", "~")) or "\\" in name:
            raise EmoError(f"{where}: no such model folder here (moved or deleted since training?)")
        raise EmoError(f"{where}: neither a built-in backbone, a model folder here nor a Hugging Face repo id")
    if allow_download:
        return
    from emo.extract.encoders.hub import cached_snapshot

    snapshot = cached_snapshot(name)
    if snapshot is None:
        raise EmoError(
            f"{where}: not in the local Hugging Face cache, and emo predict downloads nothing unless asked "
            "(--allow-download), or pass a run whose backbone is a local folder"
        )
    revision = fingerprint.get("revision")
    if revision and Path(snapshot).name != revision:
        raise EmoError(
            f"{where}: the local copy is snapshot {Path(snapshot).name[:12]}, the run was trained on {str(revision)[:12]} "
            "(the backbone's weights changed since training)"
        )


def plan_extractors(record: "RunRecord", device: str, run: str | Path, allow_download: bool = False) -> dict:
    """{modality: ExtractOptions} that rebuild the run's extractors, every backbone checked; nothing is loaded."""
    modalities = list(record.modalities)
    trained = record.cache.fingerprints
    recorded = recorded_options(record, modalities, run)
    planned = {}
    for modality in modalities:
        planned[modality] = extract_options(modality, recorded[modality], device)
        check_backbone(modality, planned[modality], trained[modality], allow_download, run)
    return planned


def build_checked_extractors(
    record: "RunRecord", device: str, run: str | Path, allow_download: bool = False, planned: dict | None = None
) -> dict[str, Any]:
    """{modality: extractor} for the run's modalities, each with the fingerprint recorded at training.

    EmoError when a backbone is refused (`check_backbone`), an extractor cannot be built, or its
    fingerprint differs (naming modality and field). Nothing is downloaded unless `allow_download`.
    """
    from emo.extract.encoders.hub import downloads_allowed
    from emo.extract.run.local import build_extractor

    planned = planned or plan_extractors(record, device, run, allow_download)
    trained = record.cache.fingerprints
    extractors, refusals = {}, []
    for modality, options in planned.items():
        try:
            with downloads_allowed(allow_download):
                extractor = build_extractor(modality, options, device)
        except EmoError as err:
            raise EmoError(f"{run}: {modality}: cannot build the extractor the run was trained with: {err}") from None
        except ValueError as err:
            raise EmoError(f"{run}: {modality}: cannot build the extractor the run was trained with ({err})") from None
        change = describe_changes(trained[modality], extractor.fingerprint())
        if change:
            refusals.append(f"{modality}: {change}")
        extractors[modality] = extractor
    if refusals:
        raise EmoError(
            f"{run}: refused, the extractors here differ from those the run was trained with: {' | '.join(refusals)} "
            "(restore the training backbones/settings, or re-extract and refit)"
        )
    return extractors


def layer_index(modality: str, fingerprint: Mapping[str, Any], row_shape: tuple, chosen: list | None) -> list[int] | None:
    """Positions along the layer axis of the layers the run trained on (None: all of them)."""
    from emo.layer_spec import stored_layer_ids

    if chosen is None:
        return None
    stored = stored_layer_ids(fingerprint, row_shape)
    unknown = [layer for layer in chosen if layer not in stored]
    if unknown:
        raise EmoError(f"{modality}: the run used layers {unknown}, the extractor keeps {stored}")
    return [stored.index(layer) for layer in chosen]
