"""Frozen Whisper encoders (any Hugging Face Whisper id or folder, or a packaged built-in) as an Extractor.

What a cached row means: one encoder frame (20 ms: two 10 ms log-mel frames through the stride-2
conv) holding the chosen hidden states, shape (layers, d_model). Layer 0 is the transformer's
input (conv features + positions), layer i the output of block i, the last layer the encoder's
output after its final layer norm. Only the encoder is ever loaded: the decoder's weights are
not read from the checkpoint.

Input modes (recorded in the fingerprint as `input`):
- "cut" (default): the encoder runs on the clip's own log-mel frames with the positional table
  cut to that length, so a 3 s clip costs 3 s of compute, not 30.
- "pad30": every window is padded to 30 s as Whisper was trained; outputs are cut to the clip's
  frames afterwards.
Whisper takes no attention mask, so padding would change the real frames: a forward only ever
holds windows with the same number of log-mel frames (in pad30 mode they all have 3000).
Clips over 30 s are cut into balanced windows on 20 ms boundaries, encoded separately and
concatenated, as for wav2vec2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emo.clip import Clip
from emo.errors import BackboneError, describe
from emo.accel import autocast
from emo.extract.encoders.audio_hf import FrozenAudioEncoder, balanced_windows, load_clip_audio

SCHEMA = 1
INPUT_MODES = ("cut", "pad30")
DEFAULT_INPUT_MODE = "cut"


def is_whisper_folder(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type") == "whisper"
    except (OSError, ValueError, AttributeError):
        return False


def _encoder_state(path: Path) -> dict:
    """The encoder's tensors of a Whisper checkpoint folder, read alone (the decoder is never loaded)."""
    import torch

    prefixes = ("model.encoder.", "encoder.")

    def keep(key: str) -> str | None:
        return next((key[len(p):] for p in prefixes if key.startswith(p)), None)

    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else []
    if not files and (path / "model.safetensors").is_file():
        files = ["model.safetensors"]
    state = {}
    if files:
        from safetensors import safe_open

        for name in files:
            with safe_open(str(path / name), framework="pt") as handle:
                for key in handle.keys():
                    if (short := keep(key)) is not None:
                        state[short] = handle.get_tensor(key)
        return state
    if (path / "pytorch_model.bin").is_file():
        full = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
        return {short: v for k, v in full.items() if (short := keep(k)) is not None}
    raise BackboneError(f"{path}: no model.safetensors or pytorch_model.bin with Whisper weights in this folder")


def build_encoder(config, state: dict, source: str):
    """transformers' WhisperEncoder holding exactly `state` (float32), built without a random init."""
    import torch
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with torch.device("meta"):
        encoder = WhisperEncoder(config)
    try:
        encoder.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)[:160]
        raise BackboneError(f"{source}: the Whisper encoder weights do not fit its config ({first[:200]})") from None
    return encoder.float().eval()


@dataclass
class PreparedMel:
    source: str  # file the samples came from, for error messages
    windows: list[np.ndarray]  # (n_mels, mel frames) float32 per window
    frames: list[int]  # encoder frames each window yields
    seconds: float


class WhisperExtractor(FrozenAudioEncoder):
    """A Whisper encoder; rows are (len(layers), d_model) float16."""

    def __init__(
        self,
        backbone: str,
        layers: str = "last",
        device: str = "cpu",
        max_window_s: float = 30.0,
        precision: str = "auto",
        input_mode: str = DEFAULT_INPUT_MODE,
        resolved: Any = None,
    ):
        self.backbone = str(backbone)
        if input_mode not in INPUT_MODES:
            raise BackboneError(f"{backbone}: Whisper input {input_mode!r} is not one of {', '.join(INPUT_MODES)}")
        from emo.extract.encoders.whisper_builtin import BUILTIN_WHISPER, load_builtin_whisper

        if self.backbone in BUILTIN_WHISPER:
            built = load_builtin_whisper(self.backbone)
            self.kind, self.revision = "packaged", built.revision
            if built.path is None:
                encoder = build_encoder(built.config, built.state, self.backbone)
                self.feature_extractor = built.feature_extractor
            else:
                encoder = self._load_folder(built.path)
        else:
            from emo.extract.encoders.hub import resolve_pretrained

            resolved = resolved or resolve_pretrained(self.backbone)
            self.kind, self.revision = "huggingface", resolved.revision
            encoder = self._load_folder(Path(resolved.path))
        config = encoder.config
        if self.feature_extractor.feature_size != config.num_mel_bins:
            raise BackboneError(
                f"{backbone}: the feature extractor makes {self.feature_extractor.feature_size} mel bins, "
                f"the encoder takes {config.num_mel_bins}"
            )
        self.encoder = self._place(encoder, device, precision, config.encoder_layers, config.d_model, layers)
        self.input_mode = input_mode
        self.n_mels = int(config.num_mel_bins)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.mel_hop = int(self.feature_extractor.hop_length)
        self.hop = 2 * self.mel_hop  # conv2 has stride 2: one encoder frame per two mel frames
        self.max_frames = int(config.max_source_positions)
        self.padded_samples = int(self.feature_extractor.n_samples)  # 30 s
        longest = self.max_frames * self.hop / self.sample_rate
        if not 0 < max_window_s <= longest:
            raise BackboneError(f"{backbone}: max window must be in (0, {longest:g}] s for Whisper, got {max_window_s} s")
        self.max_window_s = float(max_window_s)
        self.window_frames = max(1, int(self.max_window_s * self.sample_rate) // self.hop)

    def _load_folder(self, path: Path):
        from transformers import WhisperConfig, WhisperFeatureExtractor

        try:
            config = WhisperConfig.from_pretrained(path, local_files_only=True)
            self.feature_extractor = WhisperFeatureExtractor.from_pretrained(path, local_files_only=True)
        except Exception as exc:
            raise BackboneError(
                f"{self.backbone}: no usable Whisper config.json / preprocessor_config.json in {path}: "
                f"{describe(exc)}"
            ) from None
        return build_encoder(config, _encoder_state(path), self.backbone)

    # ---- geometry -------------------------------------------------------------------------
    def frames_for(self, n_samples: int) -> int:
        """Encoder frames for n samples: log-mel frames n // hop, halved (rounded up) by conv2."""
        return math.ceil((n_samples // self.mel_hop) / 2)

    def window_bounds(self, n_samples: int) -> list[tuple[int, int, int]]:
        """(start, stop, frames) windows of at most max_window_s whose frames concatenate to the clip's."""
        total = self.frames_for(n_samples)
        return [
            (first * self.hop, n_samples if last == total else last * self.hop, last - first)
            for first, last in balanced_windows(total, self.window_frames)
        ]

    # ---- Extractor protocol -----------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        fe = self.feature_extractor
        return {
            "schema": SCHEMA,
            "modality": self.modality,
            "backbone": self.backbone,
            "revision": self.revision,
            "kind": self.kind,
            "model_type": "whisper",
            "input": self.input_mode,
            "layers": list(self.layers),
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "dtype": self.dtype,
            "sample_rate": self.sample_rate,
            "log_mel": {"n_mels": self.n_mels, "n_fft": int(fe.n_fft), "hop": self.mel_hop, "chunk_s": int(fe.chunk_length)},
            "frame_rate": self.sample_rate / self.hop,
            "max_window_s": self.max_window_s,
            "downmix": "mean",
            "resampler": "soxr-HQ",
        }

    def prepare(self, clip: Clip) -> PreparedMel:
        source, samples = load_clip_audio(clip, self.sample_rate, self.mel_hop, self.backbone)
        padding = "max_length" if self.input_mode == "pad30" else "longest"
        windows, frames = [], []
        for start, stop, count in self.window_bounds(samples.shape[0]):
            mel = self.feature_extractor(
                samples[start:stop], sampling_rate=self.sample_rate, padding=padding, return_tensors="np"
            )["input_features"][0]
            windows.append(np.ascontiguousarray(mel, dtype=np.float32))
            frames.append(count)
        return PreparedMel(source, windows, frames, samples.shape[0] / self.sample_rate)

    def cost(self, prepared: PreparedMel) -> float:
        """Seconds the encoder runs on: the audio itself, or 30 s per window when padded."""
        if self.input_mode == "pad30":
            return len(prepared.windows) * self.padded_samples / self.sample_rate
        return prepared.seconds

    def encode(self, batch: Sequence[PreparedMel]) -> list[np.ndarray]:
        # Windows grouped by their exact log-mel length: no padding inside a forward, ever.
        groups: dict[int, list[tuple[int, int]]] = {}
        for clip, item in enumerate(batch):
            for window, mel in enumerate(item.windows):
                groups.setdefault(mel.shape[1], []).append((clip, window))
        pieces: list[list[np.ndarray | None]] = [[None] * len(item.windows) for item in batch]
        for members in groups.values():
            mels = np.stack([batch[c].windows[w] for c, w in members])
            for (clip, window), features in zip(members, self._forward(mels)):
                pieces[clip][window] = features[: batch[clip].frames[window]]
        return [np.concatenate(windows, axis=0) for windows in pieces]

    def _forward(self, mels: np.ndarray) -> np.ndarray:
        """(B, n_mels, T_mel) -> (B, ceil(T_mel / 2), layers, d_model) float16, the chosen hidden states.

        The encoder's own modules, called in its order; transformers' forward insists on exactly
        3000 mel frames, which the cut mode does not give it.
        """
        import torch
        from torch.nn.functional import gelu

        encoder = self.encoder
        wanted = set(self.layers)
        with torch.inference_mode(), autocast(self.device, self.autocast_dtype):
            x = gelu(encoder.conv1(torch.from_numpy(mels).to(self.device)))
            x = gelu(encoder.conv2(x)).permute(0, 2, 1)
            x = x + encoder.embed_positions.weight[: x.shape[1]]
            states = {0: x} if 0 in wanted else {}
            for index, layer in enumerate(encoder.layers, start=1):
                x = layer(x, None)
                if index == self.num_layers:
                    x = encoder.layer_norm(x)
                if index in wanted:
                    states[index] = x
                if index >= max(wanted):
                    break
            stacked = torch.stack([states[i] for i in self.layers], dim=2)
            return stacked.to(torch.float16).cpu().numpy()
