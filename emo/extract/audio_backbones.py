"""Pick the audio extractor for a backbone name: a built-in feature set or a Hugging Face encoder."""

from __future__ import annotations

from emo.extract.audio_classic import BUILTIN_AUDIO, ClassicAudioExtractor
from emo.extract.audio_hf import AudioExtractor

DEFAULT_AUDIO_BACKBONE = "facebook/wav2vec2-large-robust"


def make_audio_extractor(
    name: str = DEFAULT_AUDIO_BACKBONE,
    layers: str = "last",
    device: str = "cpu",
    max_window_s: float = 30.0,
    precision: str = "auto",
    n_mels: int = 80,
) -> AudioExtractor | ClassicAudioExtractor:
    """'egemaps' | 'compare' | 'logmel' -> built-in (CPU, no weights); anything else -> HF id or folder.

    max_window_s and precision only concern Hugging Face encoders, n_mels only 'logmel'.
    """
    if name in BUILTIN_AUDIO:
        return ClassicAudioExtractor(name, layers=layers, n_mels=n_mels)
    return AudioExtractor(name, layers=layers, device=device, max_window_s=max_window_s, precision=precision)


__all__ = ["BUILTIN_AUDIO", "DEFAULT_AUDIO_BACKBONE", "AudioExtractor", "ClassicAudioExtractor", "make_audio_extractor"]
