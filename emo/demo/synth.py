"""A small audio-visual-text emotion dataset that emo generates itself (no recordings shipped).

Each clip is a drawn talking face (MP4 with an AAC track), the same audio as WAV, and a
transcript. Emotion shows in all three with a random intensity per clip: brows and mouth
in the face; pitch level and range, loudness, speaking rate and breathiness in the voice
(the directions reported for acted emotional speech); wording in the transcript, which
is an emotion-neutral carrier sentence for some clips. So each modality alone is
imperfect and fusion has something to add. Scores on it say nothing about real data.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emo.constants import SAMPLE_RATE

EMOTIONS = ("angry", "happy", "neutral", "sad")
FPS = 25
SIZE = 256

# Voice settings per emotion: pitch ratio to the speaker's base, pitch swing (semitones),
# loudness, syllables per second, breath noise, spectral tilt (higher = darker voice).
VOICE = {
    "angry": dict(pitch=1.25, swing=3.0, level=0.9, rate=5.5, breath=0.04, tilt=0.9),
    "happy": dict(pitch=1.30, swing=6.0, level=0.7, rate=5.0, breath=0.03, tilt=1.2),
    "neutral": dict(pitch=1.00, swing=1.5, level=0.5, rate=4.0, breath=0.03, tilt=1.5),
    "sad": dict(pitch=0.85, swing=1.0, level=0.3, rate=2.8, breath=0.12, tilt=2.0),
}
# Face settings: brow tilt (inner end down > 0), mouth curve (smile > 0), lip press.
FACE = {
    "angry": dict(brow=8.0, curve=-0.3, press=1.0),
    "happy": dict(brow=-2.0, curve=1.0, press=0.0),
    "neutral": dict(brow=0.0, curve=0.0, press=0.0),
    "sad": dict(brow=-8.0, curve=-1.0, press=0.0),
}
TEXT = {
    "angry": ["I can't believe you did this again.", "This is completely unacceptable!", "Stop wasting my time.",
              "Get out of my way right now."],
    "happy": ["This is the best day ever!", "I'm so glad you came.", "We won, that's wonderful!", "I love this so much."],
    "neutral": ["The meeting starts at ten.", "Please put the files on the desk.", "The train leaves from platform two.",
                "It's eleven o'clock."],
    "sad": ["I miss her every single day.", "Nothing seems to matter anymore.", "I feel so alone tonight.",
            "It's over, we lost everything."],
}
CARRIER = ["Let me tell you what happened.", "I read the message this morning.", "We talked about it yesterday.",
           "Here is what she said."]


@dataclass(frozen=True)
class Speaker:
    name: str
    pitch_hz: float
    skin_bgr: tuple[int, int, int]
    hair_bgr: tuple[int, int, int]
    background_bgr: tuple[int, int, int]


SPEAKERS = [
    Speaker("spk1", 210.0, (120, 160, 215), (30, 35, 45), (90, 110, 130)),
    Speaker("spk2", 120.0, (90, 130, 180), (20, 20, 25), (120, 100, 90)),
    Speaker("spk3", 230.0, (140, 180, 230), (40, 80, 140), (100, 120, 100)),
    Speaker("spk4", 105.0, (70, 100, 150), (15, 15, 20), (110, 110, 110)),
    Speaker("spk5", 195.0, (110, 150, 200), (60, 60, 90), (130, 115, 100)),
    Speaker("spk6", 135.0, (100, 140, 195), (35, 45, 60), (95, 95, 120)),
]


def _mix(emotion: str, table: dict, intensity: float) -> dict:
    """Settings between neutral (intensity 0) and the full emotion (intensity 1)."""
    base, full = table["neutral"], table[emotion]
    return {k: base[k] + intensity * (full[k] - base[k]) for k in base}


def synth_voice(speaker: Speaker, emotion: str, intensity: float, seconds: float, rng) -> np.ndarray:
    v = _mix(emotion, VOICE, intensity)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    contour = 0.5 * v["swing"] * np.sin(2 * np.pi * rng.uniform(0.4, 0.9) * t + rng.uniform(0, 2 * np.pi))
    f0 = speaker.pitch_hz * v["pitch"] * 2.0 ** (contour / 12.0) * rng.uniform(0.95, 1.05)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    harmonics = np.arange(1, 25)[:, None]
    amplitude = harmonics ** (-v["tilt"]) * (harmonics * f0.mean() < 0.45 * SAMPLE_RATE)
    voiced = (amplitude * np.sin(harmonics * phase[None, :])).sum(axis=0)
    syllables = np.clip(np.sin(np.pi * v["rate"] * t + rng.uniform(0, np.pi)), 0, None) ** 0.7
    signal = v["level"] * (syllables * voiced / np.abs(voiced).max() + v["breath"] * rng.standard_normal(n))
    return (0.9 * signal / max(1.0, np.abs(signal).max())).astype(np.float32)


def draw_face(speaker: Speaker, emotion: str, intensity: float, mouth_open: float, shift: tuple[int, int], blink: bool):
    """One RGB frame of the speaker's drawn face (RetinaFace finds these reliably)."""
    import cv2

    f = _mix(emotion, FACE, intensity)
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = speaker.background_bgr
    cx, cy = SIZE // 2 + shift[0], SIZE // 2 + 5 + shift[1]
    skin, shade = speaker.skin_bgr, tuple(int(c * 0.88) for c in speaker.skin_bgr)
    cv2.ellipse(img, (cx, cy + 95), (95, 50), 0, 180, 360, (80, 60, 50), -1)
    cv2.rectangle(img, (cx - 22, cy + 50), (cx + 22, cy + 100), shade, -1)
    cv2.ellipse(img, (cx, cy - 25), (68, 70), 0, 180, 360, speaker.hair_bgr, -1)
    cv2.ellipse(img, (cx, cy), (60, 78), 0, 0, 360, skin, -1)
    for dx in (-62, 62):
        cv2.ellipse(img, (cx + dx, cy), (8, 16), 0, 0, 360, shade, -1)
    for dx in (-24, 24):
        cv2.ellipse(img, (cx + dx, cy - 12), (12, 1 if blink else 6), 0, 0, 360, (235, 235, 235), -1)
        if not blink:
            cv2.circle(img, (cx + dx, cy - 12), 5, (50, 60, 70), -1)
    brow = f["brow"]
    for side in (-1, 1):
        outer, inner = (cx + side * 36, int(cy - 28 + brow)), (cx + side * 13, int(cy - 28 - brow))
        outer = (outer[0], int(cy - 28 - brow * 0.2))
        inner = (inner[0], int(cy - 28 + brow * 0.8))
        cv2.line(img, outer, inner, (40, 40, 50), 4)
    cv2.fillPoly(img, [np.array([[cx, cy - 8], [cx - 9, cy + 16], [cx + 9, cy + 16]], np.int32)], shade)
    xs = np.linspace(-20, 20, 21)
    upper = cy + 38 - f["curve"] * 8 * (xs / 20) ** 2 - mouth_open * 3
    lower = cy + 38 - f["curve"] * 8 * (xs / 20) ** 2 + mouth_open * 8 * (1 - f["press"]) + 3
    lips = np.concatenate([np.stack([cx + xs, upper], 1), np.stack([cx + xs, lower], 1)[::-1]]).astype(np.int32)
    cv2.fillPoly(img, [lips], (90, 90, 170))
    img = cv2.GaussianBlur(img, (5, 5), 1.2)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_clip(path_mp4: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    import av

    with av.open(str(path_mp4), "w") as out:
        video = out.add_stream("mpeg4", rate=FPS)
        video.width, video.height, video.pix_fmt = SIZE, SIZE, "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        chunk = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        chunk.sample_rate = SAMPLE_RATE
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
        out.mux(video.encode(None))


def make_clip(speaker: Speaker, emotion: str, seconds: float, rng):
    intensity = rng.uniform(0.25, 1.0)
    audio = synth_voice(speaker, emotion, intensity, seconds, rng)
    n_frames = int(seconds * FPS)
    # The mouth opens with the voice's loudness in each video frame, as in talking.
    hop = SAMPLE_RATE // FPS
    loudness = np.abs(audio[: n_frames * hop]).reshape(n_frames, hop).mean(axis=1)
    mouth = loudness / max(loudness.max(), 1e-6)
    blink = rng.integers(0, n_frames)
    drift = np.cumsum(rng.integers(-1, 2, (n_frames, 2)), axis=0).clip(-8, 8)
    frames = np.stack([draw_face(speaker, emotion, intensity, mouth[i], tuple(drift[i]), i in (blink, blink + 1))
                       for i in range(n_frames)])
    frames = np.clip(frames.astype(np.int16) + rng.integers(-5, 6, frames.shape), 0, 255).astype(np.uint8)
    text = rng.choice(TEXT[emotion]) if rng.random() < 0.6 else rng.choice(CARRIER)
    return frames, audio, str(text), intensity


def make_demo_dataset(root: str | Path, clips_per_speaker_emotion: int = 5, seconds: float = 2.0, seed: int = 0) -> Path:
    """Write the clips and `manifest.csv` (id, label, speaker, audio, video, text) under `root`."""
    import soundfile as sf

    root = Path(root)
    (root / "media").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for speaker in SPEAKERS:
        for emotion in EMOTIONS:
            for k in range(clips_per_speaker_emotion):
                clip_id = f"{speaker.name}_{emotion}_{k:02d}"
                frames, audio, text, intensity = make_clip(speaker, emotion, seconds, rng)
                write_clip(root / "media" / f"{clip_id}.mp4", frames, audio)
                sf.write(root / "media" / f"{clip_id}.wav", audio, SAMPLE_RATE)
                rows.append(dict(id=clip_id, label=emotion, speaker=speaker.name, audio=f"media/{clip_id}.wav",
                                 video=f"media/{clip_id}.mp4", text=text, intensity=f"{intensity:.2f}"))
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest
