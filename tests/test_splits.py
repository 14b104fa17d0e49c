"""Splits (speaker-disjoint, k-fold coverage, validation never from test) and clip sampling."""

from __future__ import annotations

import numpy as np
import pytest

from emo.errors import EmoError
from emo.fusion.sampling import dedup_text, per_class
from emo.fusion.splits import make_folds, parse_split

CLASSES = ["a", "b", "c", "d"]


def corpus(speakers=10, per_speaker_class=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.tile(np.repeat(np.arange(4), per_speaker_class), speakers)
    spk = np.repeat([f"s{i}" for i in range(speakers)], 4 * per_speaker_class)
    order = rng.permutation(labels.size)  # clip order must not matter
    return labels[order], spk[order]


def assert_partition(fold, n):
    parts = [set(fold.train.tolist()), set(fold.val.tolist()), set(fold.test.tolist())]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert len(parts[0] | parts[1] | parts[2]) == n


def test_stratified_is_80_20_class_stratified_with_val_from_train():
    labels, spk = corpus()
    (fold,) = make_folds("stratified", labels, spk, class_names=CLASSES, seed=0)
    assert_partition(fold, labels.size)
    assert fold.test.size == pytest.approx(0.2 * labels.size, abs=1)
    assert fold.val.size == pytest.approx(0.1 * (labels.size - fold.test.size), abs=4)
    np.testing.assert_array_equal(np.bincount(labels[fold.test]), [10, 10, 10, 10])


def test_speaker_split_has_no_speaker_on_both_sides():
    labels, spk = corpus()
    (fold,) = make_folds("speaker", labels, spk, class_names=CLASSES, seed=1)
    assert_partition(fold, labels.size)
    train, val, test = (set(spk[p]) for p in (fold.train, fold.val, fold.test))
    assert not train & test and not val & test and not train & val
    assert train and val and test


def test_kfold_speaker_tests_every_clip_exactly_once():
    labels, spk = corpus(speakers=12)
    folds = make_folds("kfold-speaker:4", labels, spk, class_names=CLASSES, seed=0)
    assert len(folds) == 4
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(labels.size))
    for fold in folds:
        assert_partition(fold, labels.size)
        assert not set(spk[fold.test]) & (set(spk[fold.train]) | set(spk[fold.val]))
        assert not set(spk[fold.train]) & set(spk[fold.val])


def test_kfold_stratified_covers_every_clip():
    labels, spk = corpus()
    folds = make_folds("kfold:5", labels, spk, class_names=CLASSES, seed=0)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(labels.size))
    for fold in folds:
        assert_partition(fold, labels.size)


def test_splits_are_seeded():
    labels, spk = corpus()
    a = make_folds("speaker", labels, spk, class_names=CLASSES, seed=5)[0]
    b = make_folds("speaker", labels, spk, class_names=CLASSES, seed=5)[0]
    c = make_folds("stratified", labels, spk, class_names=CLASSES, seed=5)[0]
    d = make_folds("stratified", labels, spk, class_names=CLASSES, seed=6)[0]
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.val, b.val)
    assert not np.array_equal(c.test, d.test)


def test_column_split_uses_stored_parts_and_carves_val_from_train():
    labels, spk = corpus(speakers=4)
    column = np.where(np.arange(labels.size) % 5 == 0, "test", "train").tolist()
    (fold,) = make_folds("column:part", labels, spk, class_names=CLASSES, columns={"part": column}, seed=0)
    np.testing.assert_array_equal(fold.test, np.flatnonzero(np.array(column) == "test"))
    assert fold.val.size and set(fold.val.tolist()) <= set(np.flatnonzero(np.array(column) == "train").tolist())
    assert_partition(fold, labels.size)
    column[3] = "VALIDATION"
    (fold,) = make_folds("column:part", labels, spk, class_names=CLASSES, columns={"part": column}, seed=0)
    assert fold.val.tolist() == [3]


def test_split_errors_are_clear():
    labels, spk = corpus()
    with pytest.raises(EmoError, match="unknown split"):
        parse_split("random")
    rare = labels.copy()
    rare[np.flatnonzero(rare == 3)[1:]] = 2  # class d keeps a single clip
    with pytest.raises(EmoError, match="class 'd' has 1 clip"):
        make_folds("stratified", rare, spk, class_names=CLASSES)
    with pytest.raises(EmoError, match="needs at least 6 speakers"):
        make_folds("kfold-speaker:5", labels[spk < "s5"], spk[spk < "s5"], class_names=CLASSES)
    no_test = ["train"] * labels.size
    with pytest.raises(EmoError, match="test part is empty"):
        make_folds("column:part", labels, spk, class_names=CLASSES, columns={"part": no_test})
    with pytest.raises(EmoError, match="no such clip column.*extras columns: part"):
        make_folds("column:fold", labels, spk, class_names=CLASSES, columns={"part": no_test})
    with pytest.raises(EmoError, match="values \\['x'\\] are not train/val/test"):
        make_folds("column:part", labels, spk, class_names=CLASSES, columns={"part": ["x"] * labels.size})


def test_per_class_orders_by_duration():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    durations = np.array([3.0, 1.0, 4.0, 2.0, 9.0, 7.0, 8.0, 6.0])
    pool = np.arange(8)
    rng = np.random.default_rng(0)
    assert per_class(pool, labels, durations, 2, "short", rng).tolist() == [1, 3, 5, 7]
    assert per_class(pool, labels, durations, 2, "long", rng).tolist() == [0, 2, 4, 6]
    picked = per_class(pool, labels, durations, 3, "random", np.random.default_rng(1))
    assert np.bincount(labels[picked]).tolist() == [3, 3]
    again = per_class(pool, labels, durations, 3, "random", np.random.default_rng(1))
    np.testing.assert_array_equal(picked, again)
    # Only the training pool is sampled from; a class with fewer clips keeps them all.
    assert per_class(np.array([0, 1, 4]), labels, durations, 2, "short", rng).tolist() == [0, 1, 4]


def test_dedup_text_keeps_first_clip_per_transcript():
    texts = ["hello", "bye", " hello", "", "bye", "", "new"]
    assert dedup_text(texts).tolist() == [0, 1, 3, 5, 6]
