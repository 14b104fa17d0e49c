"""Built-in audio features that need no weights: openSMILE low-level descriptors and log-mel.

Each frame is 10 ms (100 Hz); rows are (1, D) so they store like a one-layer encoder:
eGeMAPSv02 LLDs (D = 25), ComParE_2016 LLDs (D = 65), log-mel (D = n_mels).
All the work is CPU work, so it happens in `prepare` (the runner's worker threads);
`encode` only hands the arrays over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from emo.clip import Clip
from emo.errors import BackboneError, ClipError, ClipMissing
from emo.extract.audio_decode import SAMPLE_RATE, load_audio

SCHEMA = 1
FLOAT16_MAX = 65504.0
OPENSMILE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
BUILTIN_AUDIO = ("egemaps", "compare", "logmel")
# Measured with opensmile 2.6.0: both LLD sets need 60 ms; a shorter signal yields one all-NaN frame.
OPENSMILE_MIN_SAMPLES = 960

# ComParE's spectral variance is in Hz^2 (up to ~1e7), beyond float16; its square root, the
# spectral spread in Hz, fits and carries the same information.
SQRT_COLUMNS = ("pcm_fftMag_spectralVariance_sma",)

# Log-mel settings: 25 ms Hann window, 10 ms hop, slaney mel scale up to Nyquist.
LOGMEL = {"n_fft": 512, "win_length": 400, "hop_length": 160, "f_min": 0.0, "f_max": SAMPLE_RATE / 2, "floor": 1e-10}


@dataclass
class PreparedFeatures:
    source: str
    features: np.ndarray  # (T, 1, D) float16
    seconds: float


class ClassicAudioExtractor:
    """openSMILE eGeMAPS / ComParE LLDs or log-mel, picked by name."""

    modality = "audio"
    dtype = "float16"
    sample_rate = SAMPLE_RATE
    frame_rate = 100.0

    def __init__(self, name: str, layers: str = "last", n_mels: int = 80):
        if name not in BUILTIN_AUDIO:
            raise BackboneError(f"{name}: not a built-in audio extractor (built-ins: {', '.join(BUILTIN_AUDIO)})")
        if layers.strip().lower() not in ("last", "all", "0"):
            raise BackboneError(
                f"{name}: a built-in extractor has a single layer; audio layers {layers!r} cannot be kept"
            )
        self.name = name
        self.n_mels = int(n_mels)
        self._local = threading.local()  # one openSMILE instance per worker thread
        if name in OPENSMILE_SETS:
            smile = self._smile()
            self.feature_names = list(smile.feature_names)
            self._sqrt_columns = [self.feature_names.index(c) for c in SQRT_COLUMNS if c in self.feature_names]
        else:
            if self.n_mels < 1:
                raise BackboneError(f"logmel: n_mels must be positive, got {n_mels}")
            self.feature_names = [f"logmel_{i}" for i in range(self.n_mels)]
            self._mel_filters = self._mel_filter_bank()
        self.row_shape = (1, len(self.feature_names))

    def _smile(self):
        smile = getattr(self._local, "smile", None)
        if smile is None:
            import opensmile

            smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet[OPENSMILE_SETS[self.name]],
                feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            )
            self._local.smile = smile
        return smile

    def _mel_filter_bank(self) -> np.ndarray:
        from transformers.audio_utils import mel_filter_bank

        return mel_filter_bank(
            num_frequency_bins=LOGMEL["n_fft"] // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=LOGMEL["f_min"],
            max_frequency=LOGMEL["f_max"],
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        ).astype(np.float32)  # (freq, mels)

    def _opensmile(self, samples: np.ndarray) -> np.ndarray:
        if samples.shape[0] < OPENSMILE_MIN_SAMPLES:
            return np.zeros((0, len(self.feature_names)), np.float32)
        values = self._smile().process_signal(samples, SAMPLE_RATE).to_numpy(dtype=np.float32, copy=True)
        values = values[~np.isnan(values).all(axis=1)]  # openSMILE's placeholder for "no frame"
        if self._sqrt_columns:
            values[:, self._sqrt_columns] = np.sqrt(np.maximum(values[:, self._sqrt_columns], 0.0))
        return values

    def _logmel(self, samples: np.ndarray) -> np.ndarray:
        import torch

        spectrum = torch.stft(
            torch.from_numpy(samples),
            n_fft=LOGMEL["n_fft"],
            hop_length=LOGMEL["hop_length"],
            win_length=LOGMEL["win_length"],
            window=torch.hann_window(LOGMEL["win_length"]),
            center=True,
            pad_mode="constant",  # reflect padding fails on clips shorter than half a window
            return_complex=True,
        )  # (freq, T)
        power = spectrum.abs().square()
        mel = torch.from_numpy(self._mel_filters).T @ power  # (mels, T)
        return torch.log(mel.clamp_min(LOGMEL["floor"])).T.numpy()

    # ---- Extractor protocol -----------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        common = {
            "schema": SCHEMA,
            "modality": self.modality,
            "backbone": self.name,
            "kind": "builtin",
            "layers": [0],
            "sample_rate": self.sample_rate,
            "frame_rate": self.frame_rate,
            "normalize": False,
            "downmix": "mean",
            "resampler": "soxr-HQ",
            "dtype": self.dtype,
            "clip_to_float16_range": True,
        }
        if self.name in OPENSMILE_SETS:
            import opensmile

            feature_set = OPENSMILE_SETS[self.name]
            return common | {
                "revision": f"opensmile {opensmile.__version__} {feature_set} LowLevelDescriptors",
                "library": "opensmile",
                "library_version": opensmile.__version__,
                "feature_set": feature_set,
                "feature_level": "LowLevelDescriptors",
                "sqrt_columns": list(SQRT_COLUMNS) if self._sqrt_columns else [],
            }
        import torch
        import transformers

        return common | {
            "revision": (
                f"torch.stft {torch.__version__} + transformers.audio_utils.mel_filter_bank {transformers.__version__}"
            ),
            "library": "torch+transformers",
            "library_version": f"torch {torch.__version__}, transformers {transformers.__version__}",
            "feature_set": f"logmel{self.n_mels}",
            "n_mels": self.n_mels,
            "mel_scale": "slaney",
            "mel_norm": "slaney",
            "window": "hann",
            "power": 2.0,
            "log": "natural",
        } | {key: value for key, value in LOGMEL.items()}

    def prepare(self, clip: Clip) -> PreparedFeatures:
        source = clip.audio if clip.audio is not None else clip.video
        if source is None:
            raise ClipMissing(clip.id, "no audio file and no video to take an audio track from")
        samples = load_audio(source, SAMPLE_RATE)
        values = self._opensmile(samples) if self.name in OPENSMILE_SETS else self._logmel(samples)
        if values.shape[0] == 0:
            raise ClipError(source, f"too short for {self.name}: {samples.shape[0] / SAMPLE_RATE:.3f} s gives no frame")
        if not np.isfinite(values).all():
            raise ClipError(source, f"{self.name} produced NaN or infinite features")
        # Outliers beyond float16 (e.g. spectral kurtosis of a pure tone) would be stored as inf.
        features = np.clip(values, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)[:, None, :]
        return PreparedFeatures(source, features, samples.shape[0] / SAMPLE_RATE)

    def cost(self, prepared: PreparedFeatures) -> float:
        return prepared.seconds

    def encode(self, batch: Sequence[PreparedFeatures]) -> list[np.ndarray]:
        return [item.features for item in batch]
