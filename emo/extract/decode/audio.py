"""Decode any clip's sound to one 16 kHz mono float32 signal.

Audio files (wav, flac, mp3, ogg...) go through soundfile (libsndfile); the audio track of a
video container (mp4, flv, mkv...) goes through PyAV (ffmpeg). Channels are averaged and the
result is resampled with soxr, so every backbone sees the same signal for the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emo.constants import SAMPLE_RATE
from emo.errors import ClipError, ClipMissing

# Extensions libsndfile reads itself; anything else (video containers, m4a, aac...) goes to ffmpeg.
SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".aiff", ".aif", ".au", ".caf", ".w64"}
)


def wav_shortfall(path: str) -> str | None:
    """Why a RIFF/WAVE file is shorter than its header says, or None when it is whole (or not a WAV).

    libsndfile reads a truncated WAV without complaint, returning what is there; the data
    chunk's declared size against the bytes the file holds after it tells a cut copy.
    """
    import struct

    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = Path(path).stat().st_size
            position, block_align, byte_rate = 12, 0, 0
            while position + 8 <= size:
                handle.seek(position)
                chunk, length = struct.unpack("<4sI", handle.read(8))
                if chunk == b"fmt ":
                    fmt = handle.read(min(length, 16))
                    if len(fmt) >= 14:
                        byte_rate, block_align = struct.unpack("<IH", fmt[8:14])
                elif chunk == b"data":
                    if length in (0, 0xFFFFFFFF):  # a streaming writer's placeholder: no promise made
                        return None
                    held = size - (position + 8)
                    if held >= length:
                        return None
                    seconds = (lambda n: f" ({n / byte_rate:.2f} s)" if byte_rate else "")
                    return (f"truncated WAV: its header promises {length} bytes of audio{seconds(length)}, "
                            f"the file holds {held}{seconds(held)}")
                position += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    import soundfile

    shortfall = wav_shortfall(path)
    if shortfall:
        raise ClipError(path, shortfall)
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (n, channels)
    return data.mean(axis=1, dtype=np.float32), int(rate)


def _read_av(path: str) -> tuple[np.ndarray, int]:
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise ClipMissing(path, "no audio track")
        stream = container.streams.audio[0]
        if not stream.codec_context.channels or not (stream.codec_context.sample_rate or stream.rate):
            # ffmpeg "finds" a stream in random bytes too; one with no channels or rate is no audio.
            raise ClipError(path, "no decodable audio stream")
        # Planar float keeps channels apart so the downmix below is the same plain mean as for
        # soundfile (ffmpeg's own mono downmix applies centre-mix gains).
        to_float = av.AudioResampler(format="fltp")
        chunks = []
        for frame in container.decode(stream):
            for converted in to_float.resample(frame):
                chunks.append(converted.to_ndarray())
        chunks.extend(converted.to_ndarray() for converted in to_float.resample(None))
        rate = stream.codec_context.sample_rate or stream.rate
    if not chunks:
        return np.zeros(0, np.float32), int(rate or SAMPLE_RATE)
    return np.concatenate(chunks, axis=1).mean(axis=0, dtype=np.float32), int(rate)


def _decoder_words(exc: BaseException, path: str) -> str:
    """A decoder's complaint without the path it repeats; libsndfile's "File does not exist or is
    not a regular file" for a file it cannot parse (we checked it is one) says what it means."""
    import re

    if isinstance(exc, ClipError):
        return exc.reason
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    text = text.replace(f"Error opening {path!r}: ", "").replace(f": {path!r}", "").replace(f" {path!r}", "")
    text = re.sub(r"^\[Errno -?\d+\] ", "", text)
    if "does not exist or is not a regular file" in text:
        text = "Format not recognised."
    return text


def _neither_decodes(path: str, first: BaseException, second: BaseException | None) -> str:
    ffmpeg = _decoder_words(second, path) if second is not None else "no audio decoded"
    return f"cannot decode audio: not a valid {Path(path).suffix.lstrip('.') or 'audio'} file (libsndfile: {_decoder_words(first, path)}; ffmpeg: {ffmpeg})"


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate`, shape (n,).

    Raises ClipMissing when a container has no audio track, ClipError when the file is absent,
    corrupt or holds no samples.
    """
    path = str(path)
    if not Path(path).is_file():
        raise ClipError(path, "file not found")
    if Path(path).stat().st_size == 0:  # say so plainly: decoders call it "format not recognised"
        raise ClipError(path, "empty file (0 bytes)")
    use_soundfile = Path(path).suffix.lower() in SOUNDFILE_SUFFIXES
    try:
        samples, rate = _read_soundfile(path) if use_soundfile else _read_av(path)
    except ClipError:
        raise
    except Exception as first:
        if not use_soundfile:
            raise ClipError(path, f"cannot decode audio ({_decoder_words(first, path)})") from None
        # libsndfile refuses some valid variants (odd wav headers, mp3 tags) that ffmpeg reads.
        try:
            samples, rate = _read_av(path)
        except Exception as second:
            raise ClipError(path, _neither_decodes(path, first, second)) from None
        if samples.size == 0:  # ffmpeg decoded nothing either: the file is not audio, it is not "empty"
            raise ClipError(path, _neither_decodes(path, first, None))
    if samples.size == 0:
        raise ClipError(path, "zero-length audio (no samples)")
    if not np.isfinite(samples).all():
        raise ClipError(path, "audio holds NaN or infinite samples")
    if rate != sample_rate:
        import soxr

        samples = soxr.resample(samples, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
        if samples.size == 0:
            raise ClipError(path, f"too short to resample ({rate} Hz -> {sample_rate} Hz gives no samples)")
    return np.ascontiguousarray(samples, dtype=np.float32)


def duration_seconds(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    return float(samples.shape[0]) / sample_rate
