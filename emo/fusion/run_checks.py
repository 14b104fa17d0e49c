"""Checks of a run directory's records, before anything is built from them.

A run directory is data, not instructions: its config.json, splits.json, metrics.json and the
head config in each weights file may be damaged, from an older emo, or crafted. `load_run`
passes every record through here, so eval, predict and runs see only records whose keys,
types and sizes make sense, and a bad one is a one-line EmoError naming the file and the field.
The head config goes through the head registry's declared hyperparameters and its size limit
(`build_head` on the meta device) before a byte of weights is allocated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emo.errors import EmoError
from emo.fusion.run_record import max_frames_of

RUN_INPUTS = ("audio", "text", "visual", "faces")
WEIGHTS_FILE = re.compile(r"model(-fold(\d+))?\.safetensors")
MAX_FOLDS = 100


def damaged(path: Path | str, what: str) -> EmoError:
    return EmoError(f"{path}: damaged or incompatible run record: {what}")


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_config(config: Any, path: Path) -> None:
    """Every config.json field that eval/predict/runs read: present, of the right type, consistent."""
    where = path / "config.json"
    if not isinstance(config, dict):
        raise damaged(where, f"expected a JSON object, got {type(config).__name__}")
    missing = [k for k in ("modalities", "classes", "head", "cache") if k not in config]
    if missing:
        raise damaged(where, f"missing key(s) {', '.join(missing)}")
    modalities = config["modalities"]
    if not _is_str_list(modalities) or not modalities or len(set(modalities)) != len(modalities):
        raise damaged(where, f"modalities must be a non-empty list of distinct names, got {modalities!r}"[:300])
    unknown = [m for m in modalities if m not in RUN_INPUTS]
    if unknown:
        raise damaged(where, f"unknown modality {unknown[0]!r} (known: {', '.join(RUN_INPUTS)})"[:300])
    classes = config["classes"]
    if not _is_str_list(classes) or len(classes) < 2 or len(set(classes)) != len(classes):
        raise damaged(where, f"classes must be a list of at least 2 distinct names, got {classes!r}"[:300])
    if config.get("label_column") is not None and not isinstance(config["label_column"], str):
        raise damaged(where, f"label_column must be a string or null, got {config['label_column']!r}"[:300])
    cache = config["cache"]
    if not isinstance(cache, dict):
        raise damaged(where, "cache must be an object")
    if not isinstance(cache.get("path"), str):
        raise damaged(where, "cache.path must be a string (the cache the run was trained on)")
    fingerprints = cache.get("fingerprints")
    if not isinstance(fingerprints, dict) or any(not isinstance(fingerprints.get(m), dict) for m in modalities):
        raise damaged(where, f"cache.fingerprints must hold an object for each of {', '.join(modalities)}")
    layers = cache.get("layers") or {}
    if not isinstance(layers, dict) or any(
        v is not None and not (isinstance(v, list) and all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in v))
        for v in layers.values()
    ):
        raise damaged(where, "cache.layers must map modalities to null or a list of layer ids")
    extract_options = cache.get("extract_options")
    if extract_options is not None and (
        not isinstance(extract_options, dict) or any(v is not None and not isinstance(v, dict) for v in extract_options.values())
    ):
        raise damaged(where, "cache.extract_options must map modalities to objects")
    options = config.get("options", {})
    if not isinstance(options, dict):
        raise damaged(where, "options must be an object")
    dropout = options.get("modality_dropout", 0.0)
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1):
        raise damaged(where, f"options.modality_dropout must be a number in [0, 1), got {dropout!r}"[:300])
    normalize = config.get("normalize")  # fit --normalize speaker: how eval and predict standardise
    if normalize is not None and not (isinstance(normalize, dict) and isinstance(normalize.get("mode"), str)):
        raise damaged(where, "normalize must be null or an object with a mode")
    tested = config.get("test_cache")  # fit --test-cache: where eval rescores by default
    if tested is not None and not (
        isinstance(tested, dict) and isinstance(tested.get("path"), str)
        and isinstance(tested.get("label_map"), dict) and "given" in tested["label_map"]
        and isinstance(tested.get("overlap"), dict) and isinstance(tested["overlap"].get("policy"), str)
    ):
        raise damaged(where, "test_cache must be an object with path, label_map.given and overlap.policy")
    max_frames = max_frames_of(options)
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise damaged(where, f"options.max_frames must be a positive integer or null, got {max_frames!r}"[:300])
    check_head_config(config["head"], where, classes, modalities)


def check_head_config(head: Any, where: Path, classes: list[str], modalities: list[str]) -> None:
    """The head record: a registered head, inputs = the run's modalities, one output per class,
    declared hyperparameters in range, and a size the registry accepts (checked without allocating)."""
    import torch

    from emo.fusion.heads import HEADS, build_head

    if not isinstance(head, dict) or not {"name", "inputs", "n_classes"} <= set(head):
        raise damaged(where, "head must be an object with name, inputs, n_classes (and hparams)")
    if head["name"] not in HEADS:
        raise damaged(where, f"unknown head {head['name']!r} (this emo has: {', '.join(HEADS)})"[:300])
    if not isinstance(head["inputs"], dict) or list(head["inputs"]) != list(modalities):
        shown = list(head["inputs"]) if isinstance(head["inputs"], dict) else head["inputs"]
        raise damaged(where, f"head inputs {shown!r} differ from the run's modalities {modalities}"[:300])
    if head["n_classes"] != len(classes) or isinstance(head["n_classes"], bool):
        raise damaged(where, f"the head has {head['n_classes']!r} outputs but the run lists {len(classes)} classes"[:300])
    hparams = head.get("hparams", {})
    if not isinstance(hparams, dict):
        raise damaged(where, "head hparams must be an object")
    try:
        with torch.device("meta"):  # validates everything, allocates nothing
            build_head(head["name"], head["inputs"], head["n_classes"], **hparams)
    except EmoError as err:
        raise damaged(where, f"head config: {err}") from None


def weights_files(config: dict, path: Path) -> list[str]:
    """The run's weights files, one per fold: config.json's list, or (older runs) the files present.

    The fold count comes from here, never from splits.json, which a run may lack.
    """
    listed = config.get("weights")
    if listed is None:
        present = sorted(p.name for p in path.glob("model*.safetensors") if WEIGHTS_FILE.fullmatch(p.name))
        listed = ["model.safetensors"] if "model.safetensors" in present else present
        listed = sorted(listed, key=lambda name: int(WEIGHTS_FILE.fullmatch(name).group(2) or 0))
    where = path / "config.json"
    if not _is_str_list(listed) or not listed:
        raise damaged(where if "weights" in config else path, "no weights files (model.safetensors) listed or present")
    if len(listed) > MAX_FOLDS:
        raise damaged(where, f"{len(listed)} weights files (at most {MAX_FOLDS} folds)")
    expected = ["model.safetensors"] if len(listed) == 1 else [f"model-fold{k}.safetensors" for k in range(len(listed))]
    if listed != expected:
        raise damaged(where, f"weights must be {expected[0]}{' ...' if len(expected) > 1 else ''}, got {listed[:3]}"[:300])
    return listed


def check_splits(splits: Any, n_folds: int, path: Path) -> None:
    """splits.json (when present): one {fold, train, val, test} of clip ids per weights file."""
    where = path / "splits.json"
    if not isinstance(splits, list) or len(splits) != n_folds:
        n = len(splits) if isinstance(splits, list) else type(splits).__name__
        raise damaged(where, f"expected one split per weights file ({n_folds}), got {n}")
    for k, fold in enumerate(splits):
        if not isinstance(fold, dict) or any(not _is_str_list(fold.get(part)) for part in ("train", "val", "test")):
            raise damaged(where, f"fold {k} must hold train, val and test lists of clip ids")

