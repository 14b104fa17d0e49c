"""Korean emotional speech (kor_emotiontts): `<group>/<speaker>/{wav,transcript,script}/<speaker><5 digits>`.

The label comes from the clip number. The corpus README says 2xx = angry and 3xx = sad,
but the scripts and the acoustics of the release say the opposite (neo00201 "...정말 마음이
아프다" is sad, 3xx clips are complaints, 2xx clips have the lowest energy), so:
00001-00100 neutral, 00101-00200 happy, 00201-00300 sad, 00301-00400 angry.
"""

from __future__ import annotations

import re
from pathlib import Path

from emo.clip import Clip
from emo.errors import DatasetError
from emo.extract.datasets.base import Adapter, DatasetScan, list_files, require_folder

LABELS = ("neutral", "happy", "sad", "angry")  # one block of 100 clip numbers each, in this order
NAME = re.compile(r"^([a-z]{3})(\d{5})$")
TEXT_FOLDERS = ("transcript", "script")


def label_of(number: int) -> str | None:
    return LABELS[(number - 1) // 100] if 1 <= number <= 100 * len(LABELS) else None


def script_key(group: str, speaker: str, number: int) -> str:
    """Equal for clips that read the same sentence, so splits can keep sentences disjoint.

    emotional-to-emotional speakers all read the same numbered scripts (nea00201 = neo00201);
    plain-to-emotional speakers read the same five sentences in every emotion (ema00001 =
    ema00101 = emb00201).
    """
    if group.startswith("plain"):
        number = (number - 1) % 100 + 1
    return f"{speaker[:2]}{number:05d}"


def _read_text(path: Path, skipped: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(transcript or None, why it is unusable or None)."""
    try:
        # utf-8-sig strips the byte-order mark every file of this corpus starts with.
        text = path.read_text(encoding="utf-8-sig").strip()
    except UnicodeDecodeError as err:
        problem = f"transcript {path} is not UTF-8 text ({err.reason} at byte {err.start})"
        skipped.append((str(path), f"not UTF-8 text ({err.reason})"))
        return None, problem
    except OSError as err:
        skipped.append((str(path), f"unreadable ({err.strerror})"))
        return None, f"transcript {path} is unreadable ({err.strerror})"
    return text or None, None


def scan(root: Path, *, text_source: str = "transcript") -> DatasetScan:
    require_folder(root, "Korean emotional speech")
    if text_source not in TEXT_FOLDERS:
        raise DatasetError(f"option text_source={text_source!r}: choose transcript or script")
    # transcript/ spells numbers as read ("이십명"), script/ as written ("20명"); fall back to the other.
    text_folders = (text_source,) + tuple(f for f in TEXT_FOLDERS if f != text_source)

    skipped: list[tuple[str, str]] = []
    clips = []
    for wav_folder in sorted(p for p in root.rglob("wav") if p.is_dir()):
        speaker_folder = wav_folder.parent
        group = speaker_folder.parent.name
        for entry in list_files(wav_folder, skipped=skipped):
            if entry.ext != "wav":
                skipped.append((entry.path, "not a .wav file"))
                continue
            match = NAME.match(entry.stem)
            if match is None:
                skipped.append((entry.path, "name is not <speaker><5 digits>"))
                continue
            speaker, digits = match.groups()
            if speaker != speaker_folder.name:
                skipped.append((entry.path, f"speaker {speaker!r} is not the folder's {speaker_folder.name!r}"))
                continue
            label = label_of(int(digits))
            if label is None:
                raise DatasetError(f"{entry.path}: clip number {digits} has no emotion (00001-00400 expected)")
            if entry.size == 0:
                skipped.append((entry.path, "empty file (0 bytes)"))
                continue
            text, problem = None, None
            for folder in text_folders:
                text_path = speaker_folder / folder / f"{entry.stem}.txt"
                if text_path.is_file():
                    text, problem = _read_text(text_path, skipped)
                    break
            clips.append(
                Clip(
                    id=entry.stem,
                    label=label,
                    speaker=speaker,
                    audio=entry.path,
                    text=text,
                    extras={"group": group, "script": script_key(group, speaker, int(digits))},
                    problems={"text": problem} if problem else {},
                )
            )
    return DatasetScan(clips=clips, label_names=list(LABELS), skipped=skipped)


ADAPTER = Adapter(
    name="kor-emotion",
    description="Korean emotional speech with transcripts (kor_emotiontts): 4 emotions, label from the clip number",
    layout="ROOT/<group>/<speaker>/wav/<speaker><5 digits>.wav + transcript/ or script/ <same>.txt",
    labels=LABELS,
    scan=scan,
    option_help={"text_source": "transcript (as spoken, default) or script (as written); the other is the fallback"},
)
