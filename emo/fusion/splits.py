"""Train / validation / test splits of a clip set, seeded.

Spec strings (the `--split` option):
    stratified          80/20 class-stratified random split (the papers' protocol)
    speaker             80/20 with no speaker in both train and test
    kfold:K             K class-stratified folds
    kfold-speaker:K     K speaker-grouped folds (StratifiedGroupKFold): mean and std over folds
    column:NAME         a split stored with the clips (extras column, values train/val/test)

Validation always comes out of the training part (never out of test), class-stratified for
random splits and speaker-disjoint from training for speaker splits. Every function returns
positions into the arrays it was given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from emo.errors import EmoError

TEST_FRACTION = 0.2
KINDS = ("stratified", "speaker", "kfold", "kfold-speaker", "column")
_COLUMN_VALUES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "dev": "val", "test": "test"}


@dataclass(frozen=True)
class SplitSpec:
    kind: str
    folds: int = 1
    column: str | None = None

    @property
    def by_speaker(self) -> bool:
        return self.kind in ("speaker", "kfold-speaker")

    def __str__(self) -> str:
        if self.kind in ("kfold", "kfold-speaker"):
            return f"{self.kind}:{self.folds}"
        if self.kind == "column":
            return f"column:{self.column}"
        return self.kind


@dataclass
class Fold:
    """One train/val/test partition; `index` is the fold number (0 for single splits)."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def parse_split(spec: str) -> SplitSpec:
    text = spec.strip()
    kind, _, arg = text.partition(":")
    if kind in ("stratified", "speaker") and not arg:
        return SplitSpec(kind)
    if kind in ("kfold", "kfold-speaker"):
        try:
            k = int(arg) if arg else 5
        except ValueError:
            raise EmoError(f"--split {spec}: the fold count must be an integer (e.g. {kind}:5)") from None
        if k < 2:
            raise EmoError(f"--split {spec}: k-fold needs at least 2 folds")
        return SplitSpec(kind, folds=k)
    if kind == "column" and arg:
        return SplitSpec("column", column=arg)
    raise EmoError(
        f"unknown split {spec!r}: use stratified, speaker, kfold:K, kfold-speaker:K or column:NAME"
    )


def make_folds(
    spec: SplitSpec | str,
    labels: np.ndarray,
    speakers: Sequence[str],
    *,
    class_names: Sequence[str],
    seed: int = 0,
    val_fraction: float = 0.1,
    columns: Mapping[str, Sequence[str]] | None = None,
    test_elsewhere: bool = False,
) -> list[Fold]:
    """The folds of `spec` over clips with these labels and speakers (positions into them).

    `test_elsewhere`: the test clips are in another cache (`fit --test-cache`), so one fold trains
    on every clip less a validation part, carved as `spec` (stratified or speaker) says.
    """
    spec = parse_split(spec) if isinstance(spec, str) else spec
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(speakers, dtype=object)
    if labels.size == 0:
        raise EmoError("no clips to split (empty selection)")
    if not 0.0 <= val_fraction < 1.0:
        raise EmoError(f"validation fraction must be in [0, 1), got {val_fraction}")
    everything = np.arange(labels.size)

    if test_elsewhere:
        spec = validation_only(spec)
        if val_fraction > 0 and not spec.by_speaker:
            _need_per_class(labels, class_names, 2, "a stratified validation part", "training and validation each get one")
        train, val = _carve_val(everything, labels, groups, spec.by_speaker, seed, val_fraction, class_names)
        folds = [Fold(0, train, val, np.array([], dtype=np.int64))]
    elif spec.kind == "column":
        folds = [_column_fold(spec.column, columns or {}, labels, class_names, seed, val_fraction)]
    elif spec.kind == "stratified":
        need = 3 if val_fraction > 0 else 2
        _need_per_class(labels, class_names, need, "--split stratified", "training, test and validation each get one")
        train, test = _stratified_cut(everything, labels, TEST_FRACTION, seed, class_names, "test")
        folds = [Fold(0, *_carve_val(train, labels, groups, False, seed, val_fraction, class_names), test)]
    elif spec.kind == "speaker":
        _need_speakers(groups, 3 if val_fraction > 0 else 2, "--split speaker")
        n_splits = min(round(1 / TEST_FRACTION), len(set(groups)))
        train, test = next(_group_folds(everything, labels, groups, n_splits, seed))
        folds = [Fold(0, *_carve_val(train, labels, groups, True, seed, val_fraction, class_names), test)]
    elif spec.kind == "kfold":
        _need_per_class(labels, class_names, spec.folds, f"--split {spec}", "one per fold")
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(spec.folds, shuffle=True, random_state=seed)
        folds = [
            Fold(i, *_carve_val(tr, labels, groups, False, seed, val_fraction, class_names), te)
            for i, (tr, te) in enumerate(splitter.split(everything, labels))
        ]
    elif spec.kind == "kfold-speaker":
        _need_speakers(groups, spec.folds + (1 if val_fraction > 0 else 0), f"--split {spec}")
        folds = [
            Fold(i, *_carve_val(tr, labels, groups, True, seed, val_fraction, class_names), te)
            for i, (tr, te) in enumerate(_group_folds(everything, labels, groups, spec.folds, seed))
        ]
    else:  # pragma: no cover - parse_split guards the kinds
        raise EmoError(f"unknown split kind {spec.kind!r}")

    for fold in folds:
        _check_fold(fold, labels, class_names, spec, val_fraction, test_elsewhere)
    return folds


def validation_only(spec: SplitSpec | str) -> SplitSpec:
    """A split that can carve validation from a whole cache (the test clips are elsewhere)."""
    spec = parse_split(spec) if isinstance(spec, str) else spec
    if spec.kind not in ("stratified", "speaker"):
        raise EmoError(f"--split {spec} with a test cache: the whole cache trains one model, so only "
                       "stratified or speaker (how validation is carved) apply")
    return spec


# -- building blocks ----------------------------------------------------------------------
def _need_per_class(labels: np.ndarray, class_names: Sequence[str], n: int, what: str, why: str) -> None:
    counts = np.bincount(labels, minlength=len(class_names))
    for i, count in enumerate(counts):
        if 0 < count < n:
            raise EmoError(
                f"class {class_names[i]!r} has {count} clip(s); {what} needs at least {n} per class ({why}); "
                "drop it with --classes or use another split"
            )


def _need_speakers(groups: np.ndarray, n: int, what: str) -> None:
    found = len(set(groups.tolist()))
    if found < n:
        raise EmoError(f"{what} needs at least {n} speakers (test, validation and training are speaker-disjoint); "
                       f"the clips have {found}")


def _stratified_cut(pool, labels, fraction, seed, class_names, what):
    """Class-stratified random cut of `pool` into (rest, part) with part ~ fraction of it."""
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(labels[pool]))
    # sklearn needs at least one clip per class in the cut part; small sets get that minimum.
    n_part = max(math.ceil(fraction * pool.size), n_classes)
    if n_part >= pool.size:
        raise EmoError(f"too few clips ({pool.size}) for a class-stratified {what} part with {n_classes} classes")
    try:
        rest, part = train_test_split(pool, test_size=n_part, stratify=labels[pool], random_state=seed)
    except ValueError as exc:
        counts = np.bincount(labels[pool], minlength=len(class_names))
        rare = [class_names[i] for i, c in enumerate(counts) if c == 1]
        detail = f"class(es) {rare} have a single clip there" if rare else str(exc)
        raise EmoError(f"cannot draw a class-stratified {what} part: {detail}") from None
    return np.sort(rest), np.sort(part)


def _group_folds(pool, labels, groups, n_splits, seed):
    """(rest, part) pairs of speaker-grouped, class-stratified folds over `pool`."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    for rest, part in splitter.split(pool, labels[pool], groups[pool]):
        yield np.sort(pool[rest]), np.sort(pool[part])


def _carve_val(train, labels, groups, by_speaker, seed, fraction, class_names):
    """Split the training part into (train, val); validation never touches test."""
    if fraction == 0:
        return train, np.array([], dtype=np.int64)
    if by_speaker:
        speakers = len(set(groups[train].tolist()))
        if speakers < 2:
            raise EmoError("the training part has a single speaker: no speaker-disjoint validation possible "
                           "(use more speakers or a validation fraction of 0)")
        n_splits = min(max(2, round(1 / fraction)), speakers)
        return next(_group_folds(train, labels, groups, n_splits, seed))
    return _stratified_cut(train, labels, fraction, seed, class_names, "validation")


def _column_fold(column, columns, labels, class_names, seed, val_fraction) -> Fold:
    if column not in columns:
        known = ", ".join(sorted(columns)) or "none"
        raise EmoError(f"--split column:{column}: no such clip column (extras columns: {known})")
    raw = [str(v).strip().lower() for v in columns[column]]
    unknown = sorted({v for v in raw if v and v not in _COLUMN_VALUES})
    if unknown:
        raise EmoError(f"--split column:{column}: values {unknown[:5]} are not train/val/test")
    part = np.array([_COLUMN_VALUES.get(v, "") for v in raw], dtype=object)
    train = np.flatnonzero(part == "train")
    val = np.flatnonzero(part == "val")
    test = np.flatnonzero(part == "test")
    if val.size == 0 and val_fraction > 0 and train.size:
        # No stored validation part: carve it from training (speaker-disjoint is unknowable here).
        train, val = _stratified_cut(train, labels, val_fraction, seed, class_names, "validation")
    return Fold(0, train, val, test)


def _check_fold(fold: Fold, labels, class_names, spec: SplitSpec, val_fraction: float, test_elsewhere=False) -> None:
    where = f"--split {spec}" + (f" fold {fold.index}" if spec.folds > 1 else "")
    for name, part in (("training", fold.train), ("test", fold.test)):
        if part.size == 0 and not (name == "test" and test_elsewhere):
            raise EmoError(f"{where}: the {name} part is empty")
    if val_fraction > 0 and fold.val.size == 0:
        raise EmoError(f"{where}: the validation part is empty")
    present = set(np.unique(labels[fold.train]).tolist())
    wanted = set(np.unique(labels).tolist())
    missing = sorted(class_names[i] for i in wanted - present)
    if missing:
        raise EmoError(f"{where}: class(es) {missing} have no clip in the training part (too few clips or "
                       "speakers for this split); drop them with --classes")
