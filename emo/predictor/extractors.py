"""The run's extractors, rebuilt and checked against the fingerprints recorded at training.

A head only knows the features it was trained on. So for every modality the run reads,
`emo predict` builds the extractor the cache was built with and compares its fingerprint
with the one the run recorded: any difference (other weights, layers, frame sampling, crop
size, feature library version) is refused with the field that changed.

The extractor is rebuilt from the fingerprint itself (it names the backbone, the layers and
the face sampling), overlaid with the options the extraction recorded: those copied into the
run's config.json (`cache.extract_options`), else those in the run's cache file
(`CacheReader.info(m).options`) when it is still there. Whatever the source, the fingerprint
check decides.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from emo.errors import EmoError

# Why a changed fingerprint field matters, for the refusal message; anything else is a setting.
FIELD_MEANING = {
    "revision": "the backbone's weights changed since training",
    "detector_sha256": "the face detector's weights changed since training",
    "library_version": "the feature library's version changed since training",
    "backbone": "another backbone than the one the run was trained on",
    "layers": "other hidden layers than at training",
}


def options_from_fingerprint(modality: str, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """ExtractOptions fields that rebuild the extractor a fingerprint describes."""

    def layers(value: Any) -> str | None:
        return ",".join(str(v) for v in value) if isinstance(value, list) and value else None

    if modality == "audio":
        return {
            "audio_backbone": fingerprint.get("backbone"),
            "audio_layers": layers(fingerprint.get("layers")),
            "whisper_input": fingerprint.get("input"),  # Whisper encoders only: cut or pad30
        }
    if modality == "text":
        return {"text_backbone": fingerprint.get("backbone"), "text_layers": layers(fingerprint.get("layers"))}
    faces = fingerprint.get("faces", fingerprint) if modality == "visual" else fingerprint
    options = {"fps": faces.get("fps"), "frames": faces.get("frames"), "face_size": faces.get("face_size")}
    if modality == "visual":
        options["visual_backbone"] = fingerprint.get("backbone")
    return options


def recorded_options(config: Mapping[str, Any], modalities: list[str]) -> dict[str, dict]:
    """{modality: options dict} recorded with the run, else with its cache file; {} where neither has them."""
    found = {m: dict(v) for m, v in (config["cache"].get("extract_options") or {}).items() if v}
    wanted = [m for m in modalities if m not in found]
    cache = Path(config["cache"].get("path", ""))
    if wanted and cache.is_file():
        from emo.cache import CacheReader

        try:
            reader = CacheReader(cache)
            for m in wanted:
                if m in reader.modalities and reader.info(m).options:
                    found[m] = dict(reader.info(m).options)
        except EmoError:  # a moved, rewritten or locked cache: the fingerprint still says what to build
            pass
    return found


def extract_options(modality: str, fingerprint: Mapping[str, Any], recorded: Mapping[str, Any] | None, device: str):
    """The ExtractOptions that rebuild `modality`'s extractor."""
    from emo.extract.options import ExtractOptions

    fields = {f.name for f in dataclasses.fields(ExtractOptions)}
    values = {k: v for k, v in options_from_fingerprint(modality, fingerprint).items() if v is not None}
    # Recorded options (`extract_options_for`: ExtractOptions fields, None = the extractor's default)
    # name the extractor as the user asked for it; they win where they say something. Where they
    # say None the fingerprint's value stays: the trained setting, even if a default changed since.
    given = {k: v for k, v in (recorded or {}).items() if k in fields and v is not None}
    if "fps" in given or "frames" in given:  # one of the two decides the sampling; never both
        values.pop("fps", None), values.pop("frames", None)
    values.update(given)
    values["device"] = device
    try:
        return ExtractOptions(**{k: v for k, v in values.items() if k in fields})
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


def build_checked_extractors(config: Mapping[str, Any], device: str, run: str | Path) -> dict[str, Any]:
    """{modality: extractor} for the run's modalities, each with the fingerprint recorded at training.

    EmoError when an extractor cannot be built or its fingerprint differs (naming modality and field).
    """
    from emo.extract.runner import build_extractor

    modalities = list(config["modalities"])
    trained = config["cache"]["fingerprints"]
    recorded = recorded_options(config, modalities)
    extractors, refusals = {}, []
    for modality in modalities:
        options = extract_options(modality, trained[modality], recorded.get(modality), device)
        try:
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


def stored_layer_ids(fingerprint: Mapping[str, Any], row_shape: tuple) -> list:
    """The layer ids along axis 1 of a feature row, as `CacheReader.layer_ids` reads them."""
    listed = fingerprint.get("layer_ids", fingerprint.get("layers"))
    if isinstance(listed, list) and len(listed) == row_shape[0]:
        return listed
    return list(range(row_shape[0]))


def layer_index(modality: str, fingerprint: Mapping[str, Any], row_shape: tuple, chosen: list | None) -> list[int] | None:
    """Positions along the layer axis of the layers the run trained on (None: all of them)."""
    if chosen is None:
        return None
    stored = stored_layer_ids(fingerprint, row_shape)
    unknown = [layer for layer in chosen if layer not in stored]
    if unknown:
        raise EmoError(f"{modality}: the run used layers {unknown}, the extractor keeps {stored}")
    return [stored.index(layer) for layer in chosen]
