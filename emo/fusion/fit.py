"""`fit`: train a fusion head from a cache with a split protocol, score it, save a run directory.

    from emo.fusion import fit
    result = fit("crema.h5", head="cross_attention", split="kfold-speaker:5", out="runs/ca")
    result.metrics["uar"], result.metrics["uar_std"]
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emo import __version__
from emo.errors import EmoError
from emo.accel import resolve_device
from emo.fusion.data import CachedData
from emo.fusion.display import EpochDisplay, QuietDisplay
from emo.fusion.options import FitOptions
from emo.fusion.predictions import Predictions
from emo.fusion.splits import make_folds, parse_split
from emo.fusion.steps import choose_rows, combine_folds, default_modalities, load_for_heads, recorded_extract_options, run_fold
from emo.fusion.train import deterministic

if TYPE_CHECKING:
    from emo.fusion.run_record import RunRecord


@dataclass
class RunResult:
    record: "RunRecord"  # what config.json holds (emo.fusion.run_record)
    metrics: dict
    predictions: Predictions
    histories: list[list[dict]]
    heads: list  # one trained head per fold (best weights), on the CPU, eval mode
    splits: list[dict]  # per fold: clip ids of train / val / test
    run_dir: Path | None = None

    def __getitem__(self, key: str):  # result["uar"]: the headline metrics read like metrics.json
        return self.metrics[key]


def check_reduction(model, data: CachedData, rows: np.ndarray, cache) -> None:
    """Refuse a temporal reduction whose window is longer than the shortest clip it would see.

    The head itself handles such a clip by definition (it becomes one frame, the mean of all it
    has), but a window longer than a clip means the chosen target_rate turns clips into single
    vectors, which is never what a rate setting is for.
    """
    for key, window in model.reduction_windows().items():
        lengths = data.modalities[key].lengths[rows]
        real = lengths[lengths > 0]
        if len(real) and int(real.min()) < window:
            shortest = int(real.min())
            clip = data.ids[int(rows[lengths == shortest][0])]
            rate = model.inputs[key].rate
            raise EmoError(
                f"{cache}: target_rate={model.hparams.get('target_rate')} averages {window} {key} frames "
                f"({window / rate:.3g} s at {rate:g} Hz) per step, longer than the shortest clip ({clip}: "
                f"{shortest} frames); use target_rate >= {rate / shortest:.3g}"
            )


def fit(
    cache: str | Path,
    *,
    head: str,
    out: str | Path | None = None,
    data: CachedData | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    display=None,
    **options: Any,
) -> RunResult:
    """Train `head` on `cache` under the split protocol in `options` (see FitOptions); save to `out`.

    `data` (from `load_data`) reuses an in-memory cache across fits (sweeps); it must hold the
    modalities this fit uses and was loaded with the same label column and classes.
    """
    import torch

    opts = FitOptions(head=head, **options)
    device = resolve_device(opts.device)
    display = display or (QuietDisplay() if quiet else EpochDisplay())
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        display.note(text)

    if out is not None:
        from emo.fusion.run_dir import check_run_dir

        out = check_run_dir(Path(out), overwrite)

    with deterministic(device), display:
        if data is None:
            data, per_head, reader = load_for_heads(
                cache, [head], opts.modalities, layers=opts.layers, label_column=opts.label_column,
                classes=opts.classes, device=device, check=True,
            )
            keys = per_head[head]
        else:
            from emo.cache import CacheReader

            reader = CacheReader(data.path)  # the records only (fingerprints, options); the arrays are in `data`
            kinds = {m: d.kind for m, d in data.modalities.items()}
            keys = opts.modalities or default_modalities(head, kinds, cache)
            absent = [k for k in keys if k not in data.modalities]
            if absent:
                raise EmoError(f"the preloaded data lacks {', '.join(absent)} (it holds {', '.join(data.modalities)})")
            if (opts.label_column or None) != data.label_column or (opts.classes and opts.classes != data.class_names):
                raise EmoError("the preloaded data was loaded with another label column or class list")

        data.max_frames = opts.max_frames  # recorded in config.json (options); eval and predict crop the same
        normalization = None
        if opts.normalize != "none":
            from emo.fusion.normalize import TRANSDUCTIVE, record, speaker_normalized

            data, info = speaker_normalized(data, keys, cache)
            normalization = record(opts.normalize, info)
            fallback = info["global_fallback"]
            note(f"--normalize speaker ({TRANSDUCTIVE})" + (
                f"; {len(fallback)} speaker(s) with a single clip use global statistics" if fallback else ""))

        chosen = choose_rows(data, keys, allow_missing=opts.modality_dropout > 0, dedup=opts.dedup_text, cache=cache,
                             note=note)
        rows, labels, class_names = chosen.rows, chosen.labels, chosen.class_names

        split = parse_split(opts.split)
        folds = make_folds(
            split, labels[rows], data.speakers[rows], class_names=class_names, seed=opts.seed,
            val_fraction=opts.val_fraction, columns={k: [v[r] for r in rows] for k, v in data.extras.items()},
            test_elsewhere=opts.test_cache is not None,
        )
        cross = None
        if opts.test_cache is not None:  # checked before any training: fingerprints, classes, overlap
            seen_rows = rows[np.concatenate([folds[0].train, folds[0].val])]
            cross = _prepare_test_cache(opts, data, keys, class_names, seen_rows, device)
            cross.data.max_frames = opts.max_frames
            if normalization is not None:
                from emo.fusion.normalize import normalized_cross

                cross = normalized_cross(cross, keys)
            for line in cross.notes():
                note(f"test cache: {line}")
        order_key = data.durations
        if opts.per_class and opts.order != "random" and np.isnan(order_key[rows]).any():
            order_key = data.frame_counts(keys[0]).astype(np.float32)
            note(f"clip durations are unknown: --order {opts.order} uses {keys[0]} frame counts")

        settings = opts.train_settings()
        from emo.fusion.heads import build_head

        # Hyperparameters and the reduction are checked once, before any fold prints or trains.
        check_reduction(build_head(head, data.inputs(keys), len(class_names), **opts.head_params), data, rows, cache)
        outcomes = [
            run_fold(fold, len(folds), head=head, data=data, keys=keys, chosen=chosen, opts=opts, settings=settings,
                     device=device, display=display, order_key=order_key, note=note,
                     tested_elsewhere=len(cross.rows) if cross is not None else None)
            for fold in folds
        ]
        heads = [o.head for o in outcomes]
        histories = [o.history for o in outcomes]
        splits = [o.split for o in outcomes]
        fold_metrics = [o.metrics for o in outcomes]

        if cross is not None:
            from emo.fusion.cross_corpus import score_heads

            metrics, predictions = score_heads(heads, cross, device, settings.eval_batch_size)
            metrics.update(fold_metrics[0])
            splits[0].update(test=cross.ids, test_cache=str(cross.cache.resolve()))
            display.note(f"tested on {cross.cache}: UAR {metrics['uar']:.4f} over {', '.join(metrics['classes'])}")
        else:
            predictions, metrics = combine_folds([o.part for o in outcomes], fold_metrics, class_names)
        if normalization is not None:
            metrics["normalize"] = normalization

        from emo.fusion.run_dir import weights_name
        from emo.fusion.run_record import CacheRef, RunRecord, SplitRecord, TestCacheRecord

        record = RunRecord(
            emo_version=__version__,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            name=opts.name or (Path(out).name if out is not None else head),
            cache=CacheRef(
                path=str(data.path),
                dataset=data.dataset,
                fingerprints={k: data.modalities[k].fingerprint for k in keys},
                layers={k: data.modalities[k].layers for k in keys},
                # How each extractor was asked for: emo predict rebuilds it from this record alone.
                extract_options=recorded_extract_options(reader, keys),
            ),
            head=heads[0].config,
            modalities=list(keys),
            classes=class_names,
            label_column=data.label_column,
            split=SplitRecord(str(split), len(folds), opts.seed, opts.val_fraction),
            normalize=normalization,
            clips={"used": int(len(rows)), "dedup_dropped": chosen.dedup_dropped, "left_out_missing": chosen.left_out_missing},
            options=asdict(opts),
            weights=[weights_name(k, len(heads)) for k in range(len(heads))],
            device=str(device),
            torch_version=torch.__version__,
            notes=notes,
        )
        if cross is not None:
            described = cross.describe()
            record.test_cache = TestCacheRecord(described["cache"], cross.dataset, described["label_map"],
                                                described["overlap"], data.label_column)
        result = RunResult(record, metrics, predictions, histories, heads, splits)
        if out is not None:
            from emo.fusion.run_dir import save_run

            save_run(out, result)
            result.run_dir = out
            display.note(f"run saved to {out}")
        return result


def _prepare_test_cache(opts: FitOptions, data: CachedData, keys, class_names, seen_rows, device):
    """The test cache checked against the training data (fingerprints, classes, overlap) before any training."""
    from emo.fusion.cross_corpus import prepare_cross
    from emo.fusion.overlap import trained_sources

    seen = {data.ids[r] for r in seen_rows}
    return prepare_cross(
        opts.test_cache, keys=keys, fingerprints={k: data.modalities[k].fingerprint for k in keys},
        layers={k: data.modalities[k].layers for k in keys}, run_classes=class_names, seen_ids=seen,
        seen_sources=trained_sources(data.path, seen), label_map=opts.label_map, overlap=opts.overlap,
        label_column=data.label_column, allow_missing=opts.modality_dropout > 0, device=device,
    )
