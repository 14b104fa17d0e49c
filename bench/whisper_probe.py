"""A linear probe on cached Whisper layers: the reference bar for emo's heads on the same cache.

Per clip and cached layer, the mean and the standard deviation of its frames (mean+std pooling);
the chosen layers concatenated; StandardScaler + LogisticRegression fitted on each fold's
non-test clips, scored (UAR = balanced accuracy) on its test clips. The folds are the ones
bench/korean_uar.py gives every other row. Used by `korean_uar.py --whisper-caches`, or alone:

    python bench/whisper_probe.py /work/caches/kor-whisper-base.h5 [/work/caches/kor-whisper-base-pad30.h5]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import _common  # noqa: E402 (this checkout's emo on sys.path)

# Hidden state 2 alone and all of them: the reference figures (0.940 and 0.947, cut mode).
PROBE_LAYERS = (("hidden state 2", [2]), ("all hidden states", None))


def pooled_layers(data) -> np.ndarray:
    """(clips, layers, 2 * dim) float64: mean and std over each clip's frames, per cached layer."""
    m = data.modalities["audio"]
    frames = m.data.float().numpy()
    starts = m.starts.numpy()
    out = np.empty((len(data), m.row_shape[0], 2 * m.row_shape[1]))
    for i, (start, length) in enumerate(zip(starts, m.lengths)):
        clip = frames[start : start + length].astype(np.float64)
        out[i] = np.concatenate([clip.mean(axis=0), clip.std(axis=0)], axis=-1)
    return out


def probe_folds(x: np.ndarray, labels: np.ndarray, folds) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = []
    for fold in folds:
        train = np.sort(np.concatenate([fold.train, fold.val]))  # no validation needed: all non-test clips
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        model.fit(x[train], labels[train])
        predicted = model.predict(x[fold.test])
        scores.append({"uar": balanced_accuracy_score(labels[fold.test], predicted),
                       "accuracy": accuracy_score(labels[fold.test], predicted)})
    return scores


def whisper_rows(caches: dict[str, Path], reference_ids: list[str], labels: np.ndarray, folds) -> list[tuple]:
    """korean_uar.py table rows (features, model, per-fold scores, note) for each Whisper cache."""
    from emo.fusion import load_data

    rows = []
    for mode, path in caches.items():
        data = load_data(path, ["audio"])
        if data.ids != reference_ids:
            raise SystemExit(f"{path}: another clip order than the reference cache")
        fingerprint = data.modalities["audio"].fingerprint
        layer_ids = list(fingerprint.get("layers", range(data.modalities["audio"].row_shape[0])))
        features = pooled_layers(data)
        for name, chosen in PROBE_LAYERS:
            picked = [layer_ids.index(i) for i in chosen] if chosen else list(range(len(layer_ids)))
            started = time.perf_counter()
            scores = probe_folds(features[:, picked].reshape(len(data), -1), labels, folds)
            note = f"{fingerprint['backbone']} input={fingerprint.get('input')} ({time.perf_counter() - started:.0f} s)"
            rows.append((f"whisper-{mode}", f"mean+std {name} + logreg", scores, note))
    return rows


def main() -> None:
    from korean_uar import make_bench_folds, print_table

    from emo.fusion import load_data

    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        raise SystemExit(__doc__)
    reference = load_data(paths[0], ["audio"])
    folds = make_bench_folds(reference, seed=0, val_fraction=0.2)
    caches = {load_data(p, ["audio"]).modalities["audio"].fingerprint.get("input", p.stem): p for p in paths}
    print_table(whisper_rows(caches, reference.ids, reference.labels, folds))


if __name__ == "__main__":
    main()
