"""RAVDESS: `Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac,mp4}`, 24 actors, speech and song.

Each take exists as audio-only (MM=03), audio-visual (01) and video-only (02) files. They
become one clip, id `VV-EE-II-SS-RR-AA`: audio from the audio-only file (else the AV mp4's
own track), video from the AV mp4 (else the video-only mp4).
"""

from __future__ import annotations

import re
from pathlib import Path

from emo.clip import Clip
from emo.errors import DatasetError
from emo.extract.datasets.base import Adapter, DatasetScan, list_files, require_folder, unknown_code

MODALITIES = {"01": "av", "02": "video", "03": "audio"}
EXTENSIONS = {"01": ("mp4",), "02": ("mp4",), "03": ("wav", "flac")}
CHANNELS = {"01": "speech", "02": "song"}
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
LABELS = tuple(EMOTIONS.values())
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
ACTOR_FOLDER = re.compile(r"^Actor_(\d{2})$")


def scan(root: Path, *, channel: str = "speech") -> DatasetScan:
    require_folder(root, "RAVDESS")
    if channel not in ("speech", "song", "both"):
        raise DatasetError(f"option channel={channel!r}: choose speech, song or both")

    skipped: list[tuple[str, str]] = []
    takes: dict[str, dict[str, str]] = {}
    for entry in list_files(root, recursive=True, skipped=skipped):
        match = NAME.match(entry.stem)
        if match is None:
            skipped.append((entry.path, "name is not MM-VV-EE-II-SS-RR-AA"))
            continue
        modality, vocal, emotion, intensity, statement, _, actor = match.groups()
        if modality not in MODALITIES:
            raise unknown_code(entry.path, "modality", modality, MODALITIES)
        if vocal not in CHANNELS:
            raise unknown_code(entry.path, "vocal channel", vocal, CHANNELS)
        if emotion not in EMOTIONS:
            raise unknown_code(entry.path, "emotion", emotion, EMOTIONS)
        if intensity not in INTENSITIES:
            raise unknown_code(entry.path, "intensity", intensity, INTENSITIES)
        if statement not in STATEMENTS:
            raise unknown_code(entry.path, "statement", statement, STATEMENTS)
        if entry.ext not in EXTENSIONS[modality]:
            wanted = " or ".join(f".{e}" for e in EXTENSIONS[modality])
            skipped.append((entry.path, f"modality {modality} ({MODALITIES[modality]}) should be {wanted}"))
            continue
        folder = ACTOR_FOLDER.match(Path(entry.path).parent.name)
        if folder is not None and folder.group(1) != actor:
            skipped.append((entry.path, f"actor {actor} is not the folder's Actor_{folder.group(1)}"))
            continue
        if channel != "both" and CHANNELS[vocal] != channel:
            skipped.append((entry.path, f"{CHANNELS[vocal]} take (channel={channel!r})"))
            continue
        if entry.size == 0:
            skipped.append((entry.path, "empty file (0 bytes)"))
            continue
        take = takes.setdefault(entry.stem[3:], {})
        kind = MODALITIES[modality]
        if kind in take:
            raise DatasetError(f"two files for the same take: {take[kind]} and {entry.path}")
        take[kind] = entry.path

    clips = []
    for take_id, files in takes.items():
        vocal, emotion, intensity, statement, repetition, actor = take_id.split("-")
        if "av" in files and "video" in files:
            skipped.append((files["video"], "video-only copy of a take whose audio-visual file is used"))
        clips.append(
            Clip(
                id=take_id,
                label=EMOTIONS[emotion],
                speaker=actor,
                audio=files.get("audio") or files.get("av"),
                video=files.get("av") or files.get("video"),
                text=STATEMENTS[statement],
                extras={
                    "channel": CHANNELS[vocal],
                    "intensity": INTENSITIES[intensity],
                    "statement": statement,
                    "repetition": repetition,
                    # RAVDESS documents odd-numbered actors as male, even as female.
                    "sex": "male" if int(actor) % 2 else "female",
                },
            )
        )
    return DatasetScan(clips=clips, label_names=list(LABELS), skipped=skipped)


ADAPTER = Adapter(
    name="ravdess",
    description="RAVDESS: 24 actors, 2 English statements spoken or sung, audio-only / AV / video-only files joined",
    layout="ROOT/**/Actor_NN/MM-VV-EE-II-SS-RR-AA.{wav,flac,mp4}",
    labels=LABELS,
    scan=scan,
    option_help={"channel": "speech (default), song or both"},
)
