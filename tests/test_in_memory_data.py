"""The in-memory layout built from per-clip arrays (what `emo predict` scores) is the layout
`load_data` builds from a cache, and the inference step scores clips that have no labels."""

from __future__ import annotations

import numpy as np
import torch

from emo.fusion.data import CachedData, ModalityData, load_data
from emo.fusion.train import infer_probabilities
from synthetic_cache import make_synthetic_cache


def clip_arrays(m: ModalityData) -> list:
    """Each clip's sequence back out of a loaded modality (None where the clip has none)."""
    data, starts = m.data.numpy(), m.starts.numpy()
    return [data[s : s + n] if n else None for s, n in zip(starts, m.lengths)]


class MeanHead(torch.nn.Module):
    """A stand-in head: a linear map of each input's masked mean frame."""

    def __init__(self, keys, width: int, n_classes: int = 4):
        super().__init__()
        self.keys, self.n_classes = list(keys), n_classes
        self.out = torch.nn.Linear(width * len(self.keys), n_classes)
        torch.manual_seed(0)
        torch.nn.init.normal_(self.out.weight)

    def forward(self, batch):
        pooled = []
        for key in self.keys:
            x, mask = batch[key]
            x = x.float().flatten(2) * mask.unsqueeze(-1)
            pooled.append(x.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))
        return self.out(torch.cat(pooled, dim=-1))


def test_from_arrays_gives_the_layout_load_data_gives(tmp_path):
    make_synthetic_cache(tmp_path / "c.h5", shapes={"audio": (2, 4), "text": (1, 3)}, missing={"text": 5})
    loaded = load_data(tmp_path / "c.h5", ["audio", "text"])
    rebuilt = {
        key: ModalityData.from_arrays(key, m.kind, m.row_shape, clip_arrays(m), "float16", m.fingerprint, m.layers)
        for key, m in loaded.modalities.items()
    }
    assert not loaded.modalities["text"].present.all()  # some clips lack text: the None path is exercised
    rows = np.arange(len(loaded))
    for key, m in rebuilt.items():
        np.testing.assert_array_equal(m.lengths, loaded.modalities[key].lengths)
        for ours, theirs in zip(m.gather(rows), loaded.modalities[key].gather(rows)):
            torch.testing.assert_close(ours, theirs)


def test_from_arrays_with_no_sequence_at_all_gathers_masked_rows():
    m = ModalityData.from_arrays("text", "features", (1, 3), [None, None], "float16", {})
    x, mask = m.gather(np.array([0, 1]))
    assert m.data.shape == (0, 1, 3) and m.data.dtype == torch.float16
    assert x.shape == (2, 1, 1, 3) and not mask.any()
    assert ModalityData.from_arrays("text", "features", (1, 3), [], "float16", {}).starts.shape == (0,)


def test_inference_needs_no_labels(tmp_path):
    make_synthetic_cache(tmp_path / "c.h5", shapes={"audio": (2, 4)})
    loaded = load_data(tmp_path / "c.h5", ["audio"])
    m = loaded.modalities["audio"]
    scoring = CachedData.unlabelled(
        tmp_path, {"audio": ModalityData.from_arrays("audio", m.kind, m.row_shape, clip_arrays(m), "float16", {})},
        loaded.class_names,
    )
    assert scoring.labels is None and len(scoring) == len(loaded)
    head, rows = MeanHead(["audio"], 8), np.arange(len(loaded))
    probs, loss = infer_probabilities(head, scoring, rows, ["audio"], torch.device("cpu"), batch_size=8)
    labelled, labelled_loss = infer_probabilities(head, loaded, rows, ["audio"], torch.device("cpu"), loaded.labels, batch_size=8)
    assert loss is None and labelled_loss > 0
    np.testing.assert_allclose(probs, labelled)


def test_feature_stats_match_float64_statistics_of_the_training_frames():
    """Standardisation uses these: chunked float32 sums around a reference must give the float64
    mean and std of exactly the chosen clips' real frames, also where |mean| is far above std."""
    from emo.fusion.train import feature_stats

    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal((int(n), 2, 3)) * [0.01, 1.0, 5.0] + [300.0, -2.0, 0.0]).astype(np.float16)
             for n in rng.integers(0, 40, 30)]
    m = ModalityData.from_arrays("audio", "features", (2, 3), clips, "float16", {})
    data = CachedData.unlabelled("x", {"audio": m}, ["a", "b"], speakers=[""] * len(clips))
    rows = np.arange(0, 30, 2)  # training clips only
    mean, std = feature_stats(data, ["audio"], rows, chunk=50)["audio"]  # several chunks
    frames = np.concatenate([clips[i].astype(np.float64) for i in rows])
    np.testing.assert_allclose(mean.numpy(), frames.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), frames.std(0), rtol=1e-4, atol=1e-6)
