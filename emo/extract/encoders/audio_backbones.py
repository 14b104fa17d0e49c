"""Pick the audio extractor for a backbone name: a built-in feature set, a Whisper encoder or another HF encoder."""

from __future__ import annotations

from emo.constants import DEFAULT_AUDIO_BACKBONE
from emo.errors import BackboneError
from emo.extract.encoders.audio_classic import BUILTIN_AUDIO, ClassicAudioExtractor
from emo.extract.encoders.audio_hf import AudioExtractor
from emo.extract.encoders.audio_whisper import DEFAULT_INPUT_MODE, WhisperExtractor, is_whisper_folder
from emo.extract.encoders.whisper_builtin import BUILTIN_WHISPER


def make_audio_extractor(
    name: str = DEFAULT_AUDIO_BACKBONE,
    layers: str = "last",
    device: str = "cpu",
    max_window_s: float = 30.0,
    precision: str = "auto",
    n_mels: int = 80,
    input_mode: str | None = None,
) -> AudioExtractor | ClassicAudioExtractor | WhisperExtractor:
    """'egemaps' | 'compare' | 'logmel' -> built-in (CPU, no weights); 'whisper-base' | 'whisper-tiny.en' ->
    packaged Whisper weights; anything else -> HF id or folder (Whisper or a raw-waveform encoder).

    max_window_s and precision only concern neural encoders, n_mels only 'logmel', input_mode
    ('cut' | 'pad30') only Whisper.
    """
    if name in BUILTIN_AUDIO:
        _no_input_mode(name, input_mode)
        return ClassicAudioExtractor(name, layers=layers, n_mels=n_mels)
    whisper = dict(layers=layers, device=device, max_window_s=max_window_s, precision=precision,
                   input_mode=input_mode or DEFAULT_INPUT_MODE)
    if name in BUILTIN_WHISPER:
        return WhisperExtractor(name, **whisper)
    from emo.extract.encoders.hub import resolve_pretrained

    resolved = resolve_pretrained(name)  # once: hashing a large folder's weights is not free
    if is_whisper_folder(resolved.path):
        return WhisperExtractor(name, resolved=resolved, **whisper)
    _no_input_mode(name, input_mode)
    return AudioExtractor(
        name, layers=layers, device=device, max_window_s=max_window_s, precision=precision, resolved=resolved
    )


def _no_input_mode(name: str, input_mode: str | None) -> None:
    if input_mode is not None:
        raise BackboneError(f"{name}: --whisper-input only concerns Whisper encoders")


__all__ = [
    "BUILTIN_AUDIO", "BUILTIN_WHISPER", "DEFAULT_AUDIO_BACKBONE", "AudioExtractor", "ClassicAudioExtractor",
    "WhisperExtractor", "make_audio_extractor",
]
