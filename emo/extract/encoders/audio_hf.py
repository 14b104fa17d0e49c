"""Frozen Hugging Face speech encoders (wav2vec2, HuBERT, WavLM, data2vec-audio) as an Extractor.

What a cached row means: one encoder frame (20 ms for wav2vec2) holding the chosen hidden
states, shape (layers, hidden). Three things keep a clip's features independent of the batch
it happened to land in:
- normalisation is per clip, on its own samples, as the model's feature extractor says;
- padding is used only where the conv feature encoder ignores it (layer-norm encoders, with an
  attention mask); group-norm encoders normalise over time, so padding would leak into every
  frame: they only ever see batches of equal-length segments;
- outputs are cut to the clip's true frame count.
Long clips are cut into frame-aligned windows, encoded separately and concatenated, so a
one-minute file costs two 30-second forwards instead of one quadratic one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from emo.accel import autocast, choose_precision, resolve_device
from emo.clip import Clip
from emo.errors import BackboneError, ClipError, ClipMissing, describe
from emo.extract.decode.audio import load_audio
from emo.layer_spec import encoder_layers

if TYPE_CHECKING:
    from emo.extract.encoders.hub import ResolvedModel

SCHEMA = 1
# Model families whose conv feature encoder normalises each frame on its own (LayerNorm over
# channels) whatever config.feat_extract_norm says, so zero padding does not change real frames.
LAYER_NORM_ENCODERS = frozenset({"data2vec-audio"})


def balanced_windows(total: int, window_frames: int) -> list[tuple[int, int]]:
    """[first, last) frame ranges of at most window_frames covering 0..total, as equal as can be.

    Balanced: with 30 s windows a 61 s clip becomes three ~20 s windows, not 30 + 30 + 1.
    """
    if total <= window_frames:
        return [(0, total)]
    per_window = math.ceil(total / math.ceil(total / window_frames))
    return [(first, min(first + per_window, total)) for first in range(0, total, per_window)]


def load_clip_audio(clip: Clip, sample_rate: int, min_samples: int, backbone: str) -> tuple[str, np.ndarray]:
    """(source file, mono samples at sample_rate) of a clip's audio file or video track; ClipError when too short."""
    source = clip.audio if clip.audio is not None else clip.video
    if source is None:
        raise ClipMissing(clip.id, "no audio file and no video to take an audio track from")
    samples = load_audio(source, sample_rate)
    if samples.shape[0] < min_samples:
        raise ClipError(
            source,
            f"too short for {backbone}: {samples.shape[0] / sample_rate:.3f} s gives no frame "
            f"(needs {min_samples / sample_rate:.3f} s)",
        )
    return str(source), samples


@dataclass
class PreparedWave:
    source: str  # file the samples came from, for error messages
    samples: np.ndarray  # (n,) float32, already normalised as the model expects
    seconds: float


@dataclass(frozen=True)
class Segment:
    clip: int  # index of the clip in the batch
    start: int  # first sample
    stop: int  # one past the last sample
    frames: int  # encoder frames this segment yields


class FrozenAudioEncoder:
    """What the neural audio extractors (wav2vec2-style, Whisper) share: one cached row per encoder
    frame, (len(layers), hidden) float16, and how a loaded encoder is put on its device."""

    modality = "audio"
    dtype = "float16"
    backbone: str

    def _place(self, model, device: str, precision: str, num_layers: int, hidden_size: int, layers: str):
        """`model` in eval mode on the resolved device; sets the layers kept (0 = the transformer's
        input .. num_layers = its output), the row shape and the compute dtype."""
        self.device = resolve_device(device)
        self.num_layers = int(num_layers)
        self.hidden_size = int(hidden_size)
        self.layers = encoder_layers(layers, self.num_layers + 1, self.backbone, "audio")
        self.row_shape = (len(self.layers), self.hidden_size)
        self.autocast_dtype = choose_precision(self.device, precision, self.backbone).dtype
        return model.eval().to(self.device)


class AudioExtractor(FrozenAudioEncoder):
    """A Hugging Face raw-waveform speech encoder; rows are (len(layers), hidden_size) float16."""

    def __init__(
        self,
        backbone: str,
        layers: str = "last",
        device: str = "cpu",
        max_window_s: float = 30.0,
        precision: str = "auto",
        resolved: "ResolvedModel | None" = None,
    ):
        from transformers import AutoFeatureExtractor, AutoModel

        from emo.extract.encoders.hub import resolve_pretrained

        if max_window_s <= 0:
            raise BackboneError(f"{backbone}: max window must be positive, got {max_window_s} s")
        self.backbone = str(backbone)
        self.resolved = resolved or resolve_pretrained(self.backbone)
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.resolved.path, local_files_only=True)
        except Exception as exc:
            raise BackboneError(
                f"{backbone}: no usable feature extractor config (preprocessor_config.json) in {self.resolved.path}: "
                f"{describe(exc)}"
            ) from None
        if not hasattr(self.feature_extractor, "do_normalize") or not hasattr(self.feature_extractor, "sampling_rate"):
            raise BackboneError(
                f"{backbone}: {type(self.feature_extractor).__name__} is not a raw-waveform feature extractor "
                "(expected a wav2vec2-style one with do_normalize and sampling_rate)"
            )
        try:
            model = AutoModel.from_pretrained(self.resolved.path, local_files_only=True)
        except Exception as exc:
            raise BackboneError(
                f"{backbone}: cannot load the model from {self.resolved.path}: "
                f"{describe(exc)}"
            ) from None
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise BackboneError(
                f"{backbone}: {type(model).__name__} is not a raw-waveform speech encoder "
                "(wav2vec2, HuBERT, WavLM, data2vec-audio and relatives are)"
            )
        config = model.config
        self.model = self._place(model, device, precision, config.num_hidden_layers, config.hidden_size, layers)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.normalize = bool(self.feature_extractor.do_normalize)
        self.accepts_padding = (
            getattr(config, "feat_extract_norm", "group") == "layer" or config.model_type in LAYER_NORM_ENCODERS
        )
        self.receptive_field, self.hop = self._frame_geometry()
        self.max_window_s = float(max_window_s)
        self.window_frames = max(1, self.frames_for(int(self.max_window_s * self.sample_rate)))

    # ---- geometry -------------------------------------------------------------------------
    def frames_for(self, n_samples: int) -> int:
        """Encoder frames the model yields for a signal of n samples (0 when too short)."""
        import torch

        return max(0, int(self.model._get_feat_extract_output_lengths(torch.tensor(n_samples))))

    def _frame_geometry(self) -> tuple[int, int]:
        """(samples one frame sees, samples between frames), read off the model's own length rule."""
        import torch

        lengths = torch.arange(1, 1 << 17)
        frames = self.model._get_feat_extract_output_lengths(lengths)
        first, second = (int(torch.searchsorted(frames, k)) + 1 for k in (1, 2))
        if frames[-1] < 2:
            raise BackboneError(f"{self.backbone}: frames longer than {1 << 17} samples are not supported")
        return first, second - first

    def window_bounds(self, n_samples: int) -> list[tuple[int, int, int]]:
        """(start, stop, frames) windows whose frames, concatenated, are exactly the clip's frames.

        Windows are balanced (with 30 s windows a 61 s clip becomes three ~20 s windows, not
        30 + 30 + 1) and start on frame boundaries, so frame t of the clip is still at t * hop
        samples.
        """
        total = self.frames_for(n_samples)
        bounds = []
        for first, last in balanced_windows(total, self.window_frames):
            # The last window keeps the tail samples too: group-norm encoders see the whole signal.
            stop = n_samples if last == total else (last - 1) * self.hop + self.receptive_field
            bounds.append((first * self.hop, stop, last - first))
        return bounds

    # ---- Extractor protocol -----------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "modality": self.modality,
            "backbone": self.backbone,
            "revision": self.resolved.revision,
            "kind": "huggingface",
            "model_type": self.model.config.model_type,
            "layers": list(self.layers),
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "sample_rate": self.sample_rate,
            "frame_rate": self.sample_rate / self.hop,
            "normalize": self.normalize,
            "downmix": "mean",
            "resampler": "soxr-HQ",
            "max_window_s": self.max_window_s,
            "dtype": self.dtype,
        }

    def prepare(self, clip: Clip) -> PreparedWave:
        source, samples = load_clip_audio(clip, self.sample_rate, self.receptive_field, self.backbone)
        values = self.feature_extractor(samples, sampling_rate=self.sample_rate, return_tensors="np")["input_values"]
        normalised = np.ascontiguousarray(values[0], dtype=np.float32)
        return PreparedWave(source, normalised, samples.shape[0] / self.sample_rate)

    def cost(self, prepared: PreparedWave) -> float:
        return prepared.seconds

    def encode(self, batch: Sequence[PreparedWave]) -> list[np.ndarray]:
        segments = [
            Segment(index, start, stop, frames)
            for index, item in enumerate(batch)
            for start, stop, frames in self.window_bounds(item.samples.shape[0])
        ]
        pieces: list[list[np.ndarray | None]] = [[] for _ in batch]
        slot = {}  # segment -> its place among its clip's windows
        for segment in segments:
            slot[segment] = len(pieces[segment.clip])
            pieces[segment.clip].append(None)
        for group in self._forward_groups(segments):
            for segment, features in zip(group, self._forward(batch, group)):
                pieces[segment.clip][slot[segment]] = features
        return [np.concatenate(windows, axis=0) for windows in pieces]

    # ---- batching -------------------------------------------------------------------------
    def _forward_groups(self, segments: list[Segment]) -> list[list[Segment]]:
        """Split segments into forwards whose padded size is at most twice the batch's own audio.

        The runner budgets a batch by its audio seconds and sorts clips by length, so this rarely
        splits anything; it keeps an unsorted batch (a long clip's windows among short clips) from
        padding every short clip to 30 s. Group-norm encoders get only equal-length groups.
        """
        if not segments:
            return []
        length = lambda s: s.stop - s.start  # noqa: E731
        budget = max(2 * sum(map(length, segments)), self.window_frames * self.hop + self.receptive_field)
        if not self.accepts_padding:
            by_length: dict[int, list[Segment]] = {}
            for segment in segments:
                by_length.setdefault(length(segment), []).append(segment)
            buckets = list(by_length.values())
        else:
            buckets = [sorted(segments, key=length, reverse=True)]
        groups = []
        for bucket in buckets:
            group: list[Segment] = []
            for segment in bucket:  # longest first: the first of a group sets its padded length
                if group and (len(group) + 1) * length(group[0]) > budget:
                    groups.append(group)
                    group = []
                group.append(segment)
            groups.append(group)
        return groups

    def _forward(self, batch: Sequence[PreparedWave], group: list[Segment]) -> list[np.ndarray]:
        import torch

        longest = max(s.stop - s.start for s in group)
        values = torch.zeros(len(group), longest, dtype=torch.float32)
        mask = torch.zeros(len(group), longest, dtype=torch.long)
        for row, segment in enumerate(group):
            samples = batch[segment.clip].samples[segment.start : segment.stop]
            values[row, : samples.shape[0]] = torch.from_numpy(samples)
            mask[row, : samples.shape[0]] = 1
        want_hidden = any(i != self.num_layers for i in self.layers)
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            out = self.model(
                input_values=values.to(self.device),
                attention_mask=mask.to(self.device) if self.accepts_padding else None,
                output_hidden_states=want_hidden,
            )
            # Layer num_layers is the model's output: after the final layer norm in stable-layer-norm
            # encoders (large-robust). transformers 5's hidden_states[-1] stops before that norm,
            # transformers 4's after it; taking last_hidden_state gives the same rows under both.
            picked = [out.last_hidden_state if i == self.num_layers else out.hidden_states[i] for i in self.layers]
            stacked = torch.stack(picked, dim=2)  # (B, T, layers, D)
            stacked = stacked.to(torch.float16).cpu().numpy()
        return [stacked[row, : segment.frames] for row, segment in enumerate(group)]
