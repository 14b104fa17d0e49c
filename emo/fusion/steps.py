"""The named steps of a fit, shared by `fit`, `sweep` and `evaluate`.

    data, per_head, reader = load_for_heads(cache, heads, modalities, ...)   fit, sweep: one read of the cache
    chosen = choose_rows(data, keys, ...)                                     fit: the clips and classes trained for
    outcome = run_fold(fold, ...)                                             fit: one fold trained, tested, scored
    part, metrics = score_fold(ids, true, probs, fold, class_names)           fit, evaluate: one fold's test scores
    predictions, metrics = combine_folds(parts, fold_metrics, class_names)    fit, evaluate: the run's scores
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emo.errors import EmoError
from emo.fusion.data import CachedData, load_data, modality_kind
from emo.fusion.metrics import aggregate_folds, score
from emo.fusion.predictions import Predictions


# -- loading ------------------------------------------------------------------------------------
def default_modalities(head: str, available: dict[str, str], cache: str | Path) -> list[str]:
    """What `head` takes among the cache's modalities ({name: kind}); visual features before crops."""
    from emo.fusion.heads import HEADS

    if head not in HEADS:
        raise EmoError(f"unknown head {head!r}; available: {', '.join(HEADS)}")
    requires = HEADS[head].requires
    chosen = []
    for modality in requires.allowed:
        if modality in available:
            chosen.append(modality)
        elif modality == "visual" and requires.faces_ok and "faces" in available:
            chosen.append("faces")
    chosen = chosen[: requires.hi]
    if len(chosen) < requires.lo:
        holds = ", ".join(available) or "nothing"
        crops = " (raw face crops, which this head cannot take: it needs cached encoder features)" if (
            "faces" in available and not requires.faces_ok) else ""
        raise EmoError(f"head {head!r} needs {requires}; the cache {cache} holds {holds}{crops}")
    return chosen


def check_head_fits(head: str, modalities: Sequence[str], reader, cache) -> None:
    """Refuse a head/modality mismatch before reading any data."""
    from emo.fusion.heads import HEADS, InputSpec

    missing = [m for m in modalities if m not in reader.modalities]
    if missing:
        holds = ", ".join(reader.modalities) or "nothing"
        raise EmoError(f"{cache}: no {', '.join(missing)} modality in this cache (it holds: {holds})")
    if head not in HEADS:
        raise EmoError(f"unknown head {head!r}; available: {', '.join(HEADS)}")
    specs = {m: InputSpec(m, modality_kind(reader, m), reader.row_shape(m)) for m in modalities}
    HEADS[head].requires.check(head, specs)


def load_for_heads(
    cache, heads: Sequence[str], modalities: Sequence[str] | None, *, layers=None, label_column: str | None = None,
    classes: Sequence[str] | None = None, device="cpu", check: bool = False,
):
    """(CachedData with every modality the heads read, {head: its modalities}, the CacheReader): one read.

    `check`: refuse a head that cannot take its modalities before any array is read.
    """
    from emo.cache import CacheReader
    from emo.layer_spec import layers_by_modality

    reader = CacheReader(cache)
    kinds = {m: modality_kind(reader, m) for m in reader.modalities}
    per_head = {h: list(modalities) if modalities else default_modalities(h, kinds, cache) for h in heads}
    if check:
        for h in heads:
            check_head_fits(h, per_head[h], reader, cache)
    union = [m for m in reader.modalities if any(m in keys for keys in per_head.values())]
    data = load_data(
        cache, union, layers=layers_by_modality(layers, [m for m in union if kinds[m] == "features"]),
        label_column=label_column, classes=classes, device=device, reader=reader,
    )
    return data, per_head, reader


def recorded_extract_options(reader, keys: Sequence[str]) -> dict[str, dict]:
    """{modality: the extract options the cache recorded for it} ({} where the cache recorded none)."""
    return {k: dict(reader.info(k).options) for k in keys}


# -- rows and classes ---------------------------------------------------------------------------
@dataclass
class Chosen:
    """The clips a fit trains and tests on, and the classes its head outputs."""

    rows: np.ndarray  # data rows used
    labels: np.ndarray  # (len(data),) index into class_names, -1 = a class left out
    class_names: list[str]
    left_out_missing: int  # labelled clips lacking one of the modalities
    dedup_dropped: int  # clips dropped for a repeated transcript


def choose_rows(
    data: CachedData, keys: Sequence[str], *, allow_missing: bool, dedup: bool, cache, note: Callable[[str], None]
) -> Chosen:
    """The clips that have the modalities (or one of them, `allow_missing`), deduplicated by transcript
    when asked, and the classes present among them; `note` says what was left out."""
    from emo.fusion.sampling import dedup_text

    rows = data.rows_with(keys, allow_missing=allow_missing)
    skipped = len(data) - len(rows)
    if skipped:
        note(f"{skipped} labelled clips lack one of {', '.join(keys)} and are left out")
    dedup_dropped = 0
    if dedup:
        kept = dedup_text([data.texts[r] for r in rows])
        dedup_dropped = len(rows) - len(kept)
        rows = rows[kept]
        note(f"--dedup-text dropped {dedup_dropped} clips with a repeated transcript ({len(rows)} left)")
    if len(rows) == 0:
        raise EmoError(f"{cache}: no clip left to train on")

    # Classes with no clip left are not trained for (e.g. a perceived-label value seen only on
    # clips missing a modality); the head's outputs are the classes present.
    present = np.unique(data.labels[rows])
    class_names = [data.class_names[i] for i in present]
    remap = np.full(len(data.class_names) + 1, -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    labels = remap[data.labels]
    if len(class_names) < 2:
        raise EmoError(f"{cache}: only one class ({class_names}) among the selected clips")
    dropped_classes = [c for c in data.class_names if c not in class_names]
    if dropped_classes:
        note(f"classes without clips are left out: {', '.join(dropped_classes)}")
    return Chosen(rows, labels, class_names, int(skipped), dedup_dropped)


# -- one fold -----------------------------------------------------------------------------------
@dataclass
class FoldOutcome:
    head: object  # the trained head (best weights), on the CPU, in eval mode
    history: list[dict]
    metrics: dict  # test scores (none when tested elsewhere) and the fold's training record
    split: dict  # fold, train, val, test clip ids
    part: Predictions | None  # test predictions (None when tested elsewhere)


def run_fold(
    fold, n_folds: int, *, head: str, data: CachedData, keys: Sequence[str], chosen: Chosen, opts, settings, device,
    display, order_key: np.ndarray, note: Callable[[str], None], tested_elsewhere: int | None = None,
) -> FoldOutcome:
    """Train `head` on one fold's training rows (best epoch by validation), then score its test rows.

    `tested_elsewhere`: the number of clips of another cache the run is tested on after training
    (fit --test-cache); the fold's own test rows are then not scored.
    """
    import torch

    from emo.fusion.heads import build_head
    from emo.fusion.sampling import per_class
    from emo.fusion.train import infer_probabilities, train_fold

    rows, labels = chosen.rows, chosen.labels
    train_rows, val_rows, test_rows = rows[fold.train], rows[fold.val], rows[fold.test]
    if opts.per_class:
        sample_rng = np.random.default_rng([opts.seed, fold.index, 1])
        before = len(train_rows)
        train_rows = per_class(train_rows, labels, order_key, opts.per_class, opts.order, sample_rng)
        note(f"--per-class {opts.per_class} --order {opts.order}: {len(train_rows)} of {before} training clips")
    test_size = len(test_rows) if tested_elsewhere is None else tested_elsewhere
    display.fold(fold.index, n_folds, {"train": len(train_rows), "val": len(val_rows), "test": test_size}, opts.epochs)
    torch.manual_seed(opts.seed)
    model = build_head(head, data.inputs(keys), len(chosen.class_names), **opts.head_params)
    sklearn = getattr(model, "fitted_by_sklearn", False)  # logreg / svm: scikit-learn, no training loop
    if sklearn:
        training = model.fit_sklearn(data, keys, labels, train_rows, val_rows, opts.seed, device,
                                     class_weights=opts.class_weights)
        display.epoch(training.history[-1])
    else:
        training = train_fold(
            model, data, keys, labels, train_rows, val_rows, settings, device,
            np.random.default_rng([opts.seed, fold.index]), display.epoch,
        )
    part, scored = None, {}
    if tested_elsewhere is None:
        if sklearn:  # from the pooled features it was fitted on
            probs = model.probabilities(data, keys, test_rows)
        else:
            probs, _ = infer_probabilities(model, data, test_rows, keys, device, labels, settings.eval_batch_size)
        part, scored = score_fold([data.ids[r] for r in test_rows], labels[test_rows], probs, fold.index,
                                  chosen.class_names)
    scored.update(
        fold=fold.index, best_epoch=training.best_epoch, epochs_run=len(training.history),
        best_val_weighted_f1=training.best_val_weighted_f1, n_train=len(train_rows), n_val=len(val_rows),
    )
    split = {
        "fold": fold.index,
        **{name: [data.ids[r] for r in part_rows] for name, part_rows in
           (("train", train_rows), ("val", val_rows), ("test", test_rows))},
    }
    return FoldOutcome(model.cpu().eval(), training.history, scored, split, part)


# -- scores -------------------------------------------------------------------------------------
def score_fold(ids: list[str], true: np.ndarray, probs: np.ndarray, fold: int, class_names: list[str]):
    """(the fold's test Predictions, its scores with the fold index)."""
    part = Predictions(ids=list(ids), true=true, predicted=probs.argmax(axis=1), probs=probs,
                       fold=np.full(len(ids), fold), class_names=class_names)
    return part, {**score(part.true, part.predicted, class_names), "fold": fold}


def combine_folds(parts: list[Predictions], fold_metrics: list[dict], class_names: list[str]):
    """(every fold's predictions, the run's scores): one fold's own, or k folds' mean, std and pooled scores."""
    if not parts:  # never concatenate nothing
        raise EmoError("no fold was scored")
    predictions = Predictions.concat(parts)
    if len(fold_metrics) == 1:
        return predictions, fold_metrics[0]
    return predictions, aggregate_folds(fold_metrics, score(predictions.true, predictions.predicted, class_names))
