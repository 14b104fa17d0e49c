"""EMO-DB (Berlin Database of Emotional Speech): `NNtttEv.wav`, 10 actors, 10 German sentences, 7 emotions."""

from __future__ import annotations

import re
from pathlib import Path

from emo.clip import Clip
from emo.extract.datasets.base import Adapter, DatasetScan, list_files, require_folder, unknown_code

# The emotion letter is the German word's initial (Wut, Langeweile, Ekel, Angst, Freude, Trauer, Neutral).
EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
LABELS = tuple(EMOTIONS.values())
# The ten sentences as the EMO-DB documentation gives them.
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# Speaker sex and age at recording, from the EMO-DB documentation.
SPEAKERS = {
    "03": ("male", "31"),
    "08": ("female", "34"),
    "09": ("female", "21"),
    "10": ("male", "32"),
    "11": ("male", "26"),
    "12": ("male", "30"),
    "13": ("female", "32"),
    "14": ("female", "35"),
    "15": ("male", "25"),
    "16": ("female", "31"),
}
NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")


def scan(root: Path) -> DatasetScan:
    require_folder(root, "EMO-DB")
    folder = root / "wav" if (root / "wav").is_dir() else root
    skipped: list[tuple[str, str]] = []
    clips = []
    for entry in list_files(folder, skipped=skipped):
        if entry.ext not in ("wav", "flac"):
            skipped.append((entry.path, "not a .wav or .flac file"))
            continue
        match = NAME.match(entry.stem)
        if match is None:
            skipped.append((entry.path, "name is not <speaker 2 digits><text code><emotion letter><version>"))
            continue
        speaker, text_code, emotion, version = match.groups()
        if emotion not in EMOTIONS:
            raise unknown_code(entry.path, "emotion", emotion, EMOTIONS)
        if entry.size == 0:
            skipped.append((entry.path, "empty file (0 bytes)"))
            continue
        extras = {"text_code": text_code, "version": version}
        if speaker in SPEAKERS:
            extras["sex"], extras["age"] = SPEAKERS[speaker]
        clips.append(
            Clip(
                id=entry.stem,
                label=EMOTIONS[emotion],
                speaker=speaker,
                audio=entry.path,
                text=SENTENCES.get(text_code),
                extras=extras,
            )
        )
    return DatasetScan(clips=clips, label_names=list(LABELS), skipped=skipped)


ADAPTER = Adapter(
    name="emodb",
    description="EMO-DB (Berlin): 10 actors, 10 German sentences, 7 emotions, audio only",
    layout="ROOT/NNtttEv.{wav,flac} or ROOT/wav/NNtttEv.{wav,flac} (speaker, text code, emotion, version)",
    labels=LABELS,
    scan=scan,
)
