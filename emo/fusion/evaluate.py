"""`evaluate`: rescore a saved run on its own test split, or on another cache's clips.

The cache must carry the same fingerprints as at training time for every modality the head
reads (same backbone, revision, layers, preprocessing): a different one would feed the head
features it never saw, so it is refused with the modality and field that differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from emo.errors import EmoError
from emo.fusion.data import load_data
from emo.fusion.metrics import aggregate_folds, score
from emo.fusion.predictions import Predictions
from emo.fusion.run_dir import load_run
from emo.fusion.train import deterministic, predict, resolve_device


@dataclass
class EvalResult:
    metrics: dict
    predictions: Predictions
    cache: Path
    same_cache: bool  # True: scored on the run's own test split
    dropped: list[str]


def check_fingerprints(config: dict, reader, modalities: Sequence[str]) -> None:
    from emo.cache import differences

    trained = config["cache"]["fingerprints"]
    for modality in modalities:
        if modality not in reader.modalities:
            holds = ", ".join(reader.modalities) or "nothing"
            raise EmoError(f"{reader.path}: no {modality} modality, which the run was trained on (it holds: {holds})")
        changed = differences(trained[modality], reader.fingerprint(modality))
        if changed:
            raise EmoError(
                f"{reader.path}: {modality} fingerprint differs from training: {'; '.join(changed)} "
                "(re-extract with the training settings or refit on this cache)"
            )


def evaluate(
    run: str | Path,
    cache: str | Path | None = None,
    *,
    drop: Sequence[str] = (),
    device: str = "auto",
    batch_size: int = 128,
) -> EvalResult:
    """Scores of a run's saved model(s): k-fold runs score each fold's model on its own test fold
    (same cache) or on every clip (another cache) and report mean and std like `fit`."""
    from emo.cache import CacheReader

    saved = load_run(run)
    config = saved.config
    modalities = list(config["modalities"])
    drop = list(drop)
    unknown = [m for m in drop if m not in modalities]
    if unknown:
        raise EmoError(f"--drop {', '.join(unknown)}: the run uses {', '.join(modalities)}")
    keys = [m for m in modalities if m not in drop]
    if not keys:
        raise EmoError("--drop would remove every modality the run uses")

    trained_path = Path(config["cache"]["path"])
    cache_path = Path(cache) if cache is not None else trained_path
    same_cache = cache is None or cache_path.resolve() == trained_path.resolve()
    reader = CacheReader(cache_path)
    check_fingerprints(config, reader, keys)

    device = resolve_device(device)
    class_names = list(config["classes"])
    test_ids = None
    if same_cache:
        if not saved.splits:
            raise EmoError(f"{saved.path}: no splits.json, so the run's test split is unknown")
        test_ids = sorted({cid for fold in saved.splits for cid in fold["test"]})
    data = load_data(
        cache_path, keys, layers=config["cache"]["layers"], label_column=config.get("label_column"),
        classes=class_names, strict_classes=same_cache, clip_ids=test_ids, device=device, reader=reader,
    )
    index = {cid: i for i, cid in enumerate(data.ids)}
    # A run trained with modality dropout was also tested on clips missing a modality.
    allow_missing = config.get("options", {}).get("modality_dropout", 0) > 0
    usable = data.rows_with(keys, allow_missing)
    usable_ids = {data.ids[r] for r in usable}
    heads = saved.heads()
    parts, fold_metrics = [], []
    with deterministic(device):
        for fold, head in enumerate(heads):
            if same_cache:
                ids = saved.splits[fold]["test"]
                lost = [c for c in ids if c not in usable_ids]
                if lost:
                    raise EmoError(f"{cache_path}: {len(lost)} test clips of fold {fold} are gone or lack a modality "
                                   f"(e.g. {lost[0]})")
                rows = np.array([index[c] for c in ids], dtype=np.int64)
            else:
                rows = usable
                if rows.size == 0:
                    raise EmoError(f"{cache_path}: no clip of the classes {class_names} has {', '.join(keys)}")
            head.to(device)
            probs, _ = predict(head, data, rows, keys, device, data.labels, batch_size)
            head.cpu()
            part = Predictions([data.ids[r] for r in rows], data.labels[rows], probs.argmax(axis=1), probs,
                               np.full(len(rows), fold), class_names)
            parts.append(part)
            fold_metrics.append({**score(part.true, part.predicted, class_names), "fold": fold})
    predictions = Predictions.concat(parts)
    if len(heads) == 1:
        metrics = fold_metrics[0]
    else:
        metrics = aggregate_folds(fold_metrics, score(predictions.true, predictions.predicted, class_names))
    metrics["dropped"] = drop
    return EvalResult(metrics, predictions, cache_path, same_cache, drop)
