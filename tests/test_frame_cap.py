"""One long clip cannot take the machine down: heads see at most max_frames frames per clip and
input (random windows in training, centred in scoring), and scoring batches are cut by frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emo.errors import EmoError
from emo.fusion import evaluate, fit
from emo.fusion.data import DEFAULT_MAX_FRAMES, CachedData, ModalityData
from emo.fusion.fit import FitOptions
from emo.fusion.run_record import max_frames_of
from emo.fusion.train import SCORE_ATTENTION, SCORE_FRAMES, frame_budget_batches
from synthetic_cache import make_synthetic_cache

QUICK = {"epochs": 2, "lr": 1e-3, "quiet": True, "head_params": {"d_model": 8, "heads": 2, "blocks": 1, "ffn": 8}}


def modality(lengths, width=1):
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # Each row holds its own index within its clip, so a window shows where it starts.
    data = torch.from_numpy(np.concatenate([np.arange(n) for n in lengths]).astype(np.float32)).reshape(-1, 1, width)
    return ModalityData("audio", "features", (1, width), data, torch.from_numpy(starts), lengths, {}, None)


def test_long_clips_give_a_window_of_max_frames():
    m = modality([10, 2])
    x, mask = m.gather(np.array([0, 1]))
    assert x.shape[1] == 10  # no cap: the whole clip
    x, mask = m.gather(np.array([0, 1]), max_frames=4)
    assert x.shape[1] == 4 and mask.sum(1).tolist() == [4, 2]
    assert x[0, :, 0, 0].tolist() == [3, 4, 5, 6]  # centred: 6 frames skippable, 3 skipped
    assert x[1, :2, 0, 0].tolist() == [0, 1]  # a short clip is untouched
    x, _ = m.gather(np.array([0, 1]), max_frames=4, where=np.array([0.0, 0.5]))
    assert x[0, :, 0, 0].tolist() == [0, 1, 2, 3]
    x, _ = m.gather(np.array([0, 1]), max_frames=4, where=np.array([0.999, 0.5]))
    assert x[0, :, 0, 0].tolist() == [6, 7, 8, 9]


def test_training_windows_cover_the_same_stretch_of_every_input():
    audio, text = modality([100]), modality([20])
    data = CachedData(path=None, dataset="x", ids=["a"], labels=np.zeros(1, np.int64), class_names=["a", "b"],
                      label_column=None, speakers=np.array(["s"], dtype=object), durations=np.ones(1, np.float32),
                      texts=[""], extras={}, modalities={"audio": audio, "text": text}, max_frames=10)
    for seed in range(5):
        batch = data.batch(np.array([0]), ["audio", "text"], "cpu", rng=np.random.default_rng(seed))
        a, t = batch["audio"][0][0, :, 0, 0], batch["text"][0][0, :, 0, 0]
        assert len(a) == len(t) == 10
        assert abs(float(a[0]) / 90 - float(t[0]) / 10) < 0.15  # same relative position (frames differ in rate)
    untouched = np.random.default_rng(0)
    short = CachedData(**{**data.__dict__, "max_frames": 1000})
    short.batch(np.array([0]), ["audio", "text"], "cpu", rng=untouched)
    assert untouched.random() == np.random.default_rng(0).random()  # no crop, no draw: results stay as they were


def test_scoring_batches_are_cut_by_frames():
    sizes = [s.stop - s.start for s in frame_budget_batches(np.full(10, 3000), 128)]
    assert sizes == [7, 3] and 7 * 3000 * 3000 <= SCORE_ATTENTION
    assert [s.stop - s.start for s in frame_budget_batches(np.full(300, 10), 128)] == [128, 128, 44]
    lengths = np.sort(np.random.default_rng(0).integers(1, 3000, 500))
    slices = frame_budget_batches(lengths, 64)
    assert sum(s.stop - s.start for s in slices) == 500
    assert all((s.stop - s.start) * lengths[s.stop - 1] <= SCORE_FRAMES or s.stop - s.start == 1 for s in slices)


@pytest.fixture(scope="module")
def long_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "long.h5"
    make_synthetic_cache(path, shapes={"audio": (1, 8)}, speakers=3, clips_per_speaker_class=2, frames=(5, 400))
    return path


def test_fit_and_eval_never_gather_more_than_max_frames(long_cache, tmp_path, monkeypatch):
    seen = []
    gather = ModalityData.gather

    def recording(self, rows, max_frames=None, where=None):
        x, mask = gather(self, rows, max_frames, where)
        seen.append(x.shape[1])
        return x, mask

    monkeypatch.setattr(ModalityData, "gather", recording)
    fit(long_cache, head="audio", out=tmp_path / "run", max_frames=50, **QUICK)
    assert seen and max(seen) == 50
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["max_frames"] == 50
    seen.clear()
    evaluate(tmp_path / "run")
    assert seen and max(seen) == 50  # scored with the run's own cap


def test_the_cap_has_a_default_and_older_runs_get_it():
    assert FitOptions(head="audio").max_frames == DEFAULT_MAX_FRAMES
    assert max_frames_of({}) == DEFAULT_MAX_FRAMES  # options of a run from before --max-frames
    assert max_frames_of({"max_frames": None}) is None
    with pytest.raises(EmoError, match=r"--max-frames=0: expected an integer in \[1, 1000000\]"):
        FitOptions(head="audio", max_frames=0)
