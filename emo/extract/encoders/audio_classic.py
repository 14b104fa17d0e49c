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
from numpy.lib.stride_tricks import sliding_window_view

from emo.clip import Clip
from emo.constants import FLOAT16_MAX
from emo.errors import BackboneError, ClipError, ClipMissing
from emo.extract.decode.audio import SAMPLE_RATE, load_audio
from emo.layer_spec import encoder_layers

SCHEMA = 1
OPENSMILE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
BUILTIN_AUDIO = ("egemaps", "compare", "logmel")
# Measured with opensmile 2.6.0: both LLD sets need 60 ms; a shorter signal yields one all-NaN frame.
OPENSMILE_MIN_SAMPLES = 960

# ComParE's spectral variance is in Hz^2 (up to ~1e7), beyond float16; its square root, the
# spectral spread in Hz, fits and carries the same information.
SQRT_COLUMNS = ("pcm_fftMag_spectralVariance_sma",)

# Log-mel settings: 25 ms Hann window, 10 ms hop, slaney mel scale up to Nyquist.
LOGMEL = {"n_fft": 512, "win_length": 400, "hop_length": 160, "f_min": 0.0, "f_max": SAMPLE_RATE / 2, "floor": 1e-10}


def _centred_hann(win_length: int, n_fft: int) -> np.ndarray:
    """A periodic Hann window zero-padded to n_fft in the middle, as torch.stft and librosa place it."""
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    return window


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
        # One layer (0): "last", "all", "0" and "-1" all keep it.
        encoder_layers(layers, 1, name, "audio")
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
            self._window = _centred_hann(LOGMEL["win_length"], LOGMEL["n_fft"])
            self._index_filter_bands()
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

    def _index_filter_bands(self) -> None:
        """The mel filters as (bin, weight) runs grouped by band, for `np.add.reduceat`."""
        bands, bins = np.nonzero(self._mel_filters.T)  # sorted by band, then bin
        self._band_bins = bins
        self._band_weights = self._mel_filters[bins, bands].astype(np.float64)
        self._bands_present = np.unique(bands)  # a band with no bin (n_mels too high) stays zero
        self._band_starts = np.searchsorted(bands, self._bands_present)

    def _opensmile(self, samples: np.ndarray) -> np.ndarray:
        if samples.shape[0] < OPENSMILE_MIN_SAMPLES:
            return np.zeros((0, len(self.feature_names)), np.float32)
        values = self._smile().process_signal(samples, SAMPLE_RATE).to_numpy(dtype=np.float32, copy=True)
        values = values[~np.isnan(values).all(axis=1)]  # openSMILE's placeholder for "no frame"
        if self._sqrt_columns:
            values[:, self._sqrt_columns] = np.sqrt(np.maximum(values[:, self._sqrt_columns], 0.0))
        return values

    def _logmel(self, samples: np.ndarray) -> np.ndarray:
        """(T, n_mels) natural-log mel power, T = 1 + len // hop (a centred, zero-padded STFT).

        numpy rather than torch.stft: `prepare` runs on worker threads (and in the caller's thread
        in `emo predict`), where torch's intra-op pool competes with the encoder and other
        processes (measured 7-50x slower per call on a loaded 2-core machine); numpy's FFT and
        the sparse mel sums below use no thread pool at all.
        """
        n_fft, hop = LOGMEL["n_fft"], LOGMEL["hop_length"]
        padded = np.pad(samples.astype(np.float64), n_fft // 2)  # zeros: valid for clips shorter than a window
        frames = sliding_window_view(padded, n_fft)[::hop]  # (T, n_fft), a view
        # float64: numpy's float64 FFT is both faster (measured 4x, numpy 2.4) and more exact than its float32 one.
        spectrum = np.fft.rfft(frames * self._window, axis=-1)  # (T, freq)
        power = spectrum.real**2 + spectrum.imag**2
        # Each triangular mel filter covers a few adjacent bins: sum those alone instead of a
        # dense (freq x mels) product, which would go through BLAS and its thread pool.
        # Gathering rows of (freq, T) is the fast layout for the sums (measured 2.5x over columns).
        weighted = power.T[self._band_bins]
        weighted *= self._band_weights[:, None]
        mel = np.zeros((self.n_mels, power.shape[0]))
        if len(self._band_starts):
            mel[self._bands_present] = np.add.reduceat(weighted, self._band_starts, axis=0)
        return np.log(np.maximum(mel, LOGMEL["floor"])).T.astype(np.float32, order="C")

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
        import transformers

        return common | {
            "revision": f"numpy.fft.rfft {np.__version__} + transformers.audio_utils.mel_filter_bank {transformers.__version__}",
            "library": "numpy+transformers",
            "library_version": f"numpy {np.__version__}, transformers {transformers.__version__}",
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
