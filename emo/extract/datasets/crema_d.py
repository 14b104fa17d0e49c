"""CREMA-D: 7442 clips of 91 actors, 12 sentences, 6 emotions, audio (WAV) and video (FLV or MP4).

File names are `<actor>_<sentence>_<emotion>_<level>`. Actor demographics
(VideoDemographics.csv) and the crowd's perceived emotion per modality (summaryTable.csv)
are joined as extras when the metadata CSVs are found in ROOT or in the `meta` folder.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emo.clip import Clip
from emo.errors import DatasetError
from emo.extract.datasets.base import Adapter, DatasetScan, as_flag, list_files, require_folder, unknown_code

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LABELS = tuple(EMOTIONS.values())
# The raters' vote letters in summaryTable.csv, mapped onto the same label names.
VOTES = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")

# (folder, modality, extension); VideoMP4 comes before VideoFlash so a converted MP4 wins.
MEDIA_FOLDERS = (("AudioWAV", "audio", "wav"), ("VideoMP4", "video", "mp4"), ("VideoFlash", "video", "flv"))

# Files the CREMA-D README lists as not matching their name, per modality as it lists them
# (e.g. the WAV of 1076_MTI_NEU_XX is fine, its video is not). keep_broken=True keeps them.
KNOWN_BROKEN = {
    ("1076_MTI_SAD_XX", "audio"): "known broken (CREMA-D README): no audio, very short",
    ("1076_MTI_SAD_XX", "video"): "known broken (CREMA-D README): error picture, no audio, very short",
    ("1076_MTI_NEU_XX", "video"): "known broken (CREMA-D README): very short, no audio",
    ("1064_TIE_SAD_XX", "video"): "known broken (CREMA-D README): no duration",
    ("1064_IEO_DIS_MD", "video"): "known broken (CREMA-D README): one minute holding every emotion of IEO",
}

DEMOGRAPHICS = "VideoDemographics.csv"
SUMMARY = "summaryTable.csv"
SUMMARY_MODALITIES = (("Voice", "voice"), ("Face", "face"), ("MultiModal", "multimodal"))


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None


def _demographics(path: Path) -> dict[str, dict[str, str]]:
    rows = _read_csv(path, ("ActorID", "Age", "Sex", "Race", "Ethnicity"))
    return {
        row["ActorID"].strip(): {
            "age": row["Age"].strip(),
            "sex": row["Sex"].strip().lower(),
            "race": row["Race"].strip(),
            "ethnicity": row["Ethnicity"].strip(),
        }
        for row in rows
    }


def _perceived(path: Path) -> dict[str, dict[str, str]]:
    """Majority vote per modality; a tie keeps every winner, colon-separated like the CSV ("angry:disgust")."""
    columns = ["FileName"] + [f"{c}{kind}" for c, _ in SUMMARY_MODALITIES for kind in ("Vote", "Level")]
    rows = _read_csv(path, tuple(columns))
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        extras: dict[str, str] = {}
        for column, modality in SUMMARY_MODALITIES:
            votes = row[f"{column}Vote"].strip()
            if not votes:
                continue
            letters = votes.split(":")
            unknown = [v for v in letters if v not in VOTES]
            if unknown:
                raise unknown_code(f"{path} ({row['FileName']})", "vote", unknown[0], VOTES)
            extras[f"perceived_{modality}"] = ":".join(VOTES[v] for v in letters)
            extras[f"perceived_{modality}_level"] = row[f"{column}Level"].strip()
        table[row["FileName"].strip()] = extras
    return table


def _find_meta(root: Path, meta: str | Path | None) -> tuple[Path | None, Path | None]:
    """The demographics and summary CSVs, from `meta` if given (then at least one must exist), else ROOT."""
    folder = Path(meta).expanduser().resolve() if meta is not None else root
    if meta is not None and not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (option meta)")
    demographics = folder / DEMOGRAPHICS
    # The CREMA-D repository keeps summaryTable.csv in processedResults/.
    summary = next((p for p in (folder / SUMMARY, folder / "processedResults" / SUMMARY) if p.is_file()), None)
    found = (demographics if demographics.is_file() else None, summary)
    if meta is not None and found == (None, None):
        raise DatasetError(f"{folder}: neither {DEMOGRAPHICS} nor {SUMMARY} found (option meta)")
    return found


def scan(root: Path, *, meta: str | Path | None = None, keep_broken: bool | str = False) -> DatasetScan:
    require_folder(root, "CREMA-D")
    keep_broken = as_flag(keep_broken, "keep_broken")
    present = [(root / folder, modality, ext) for folder, modality, ext in MEDIA_FOLDERS if (root / folder).is_dir()]
    if not present:
        raise DatasetError(f"{root}: no AudioWAV/, VideoMP4/ or VideoFlash/ folder (not a CREMA-D root)")

    skipped: list[tuple[str, str]] = []
    takes: dict[str, dict[str, str]] = {}
    for folder, modality, ext in present:
        for entry in list_files(folder, skipped=skipped):
            if entry.ext != ext:
                skipped.append((entry.path, f"not a .{ext} file"))
                continue
            match = NAME.match(entry.stem)
            if match is None:
                skipped.append((entry.path, "name is not <actor>_<sentence>_<emotion>_<level>"))
                continue
            _, sentence, emotion, level = match.groups()
            if emotion not in EMOTIONS:
                raise unknown_code(entry.path, "emotion", emotion, EMOTIONS)
            if sentence not in SENTENCES:
                raise unknown_code(entry.path, "sentence", sentence, SENTENCES)
            if level not in LEVELS:
                raise unknown_code(entry.path, "level", level, LEVELS)
            if entry.size == 0:
                skipped.append((entry.path, "empty file (0 bytes)"))
                continue
            if not keep_broken and (entry.stem, modality) in KNOWN_BROKEN:
                skipped.append((entry.path, KNOWN_BROKEN[entry.stem, modality]))
                continue
            take = takes.setdefault(entry.stem, {})
            if modality in take:
                skipped.append((entry.path, f"{Path(take[modality]).name} is used for this clip's {modality}"))
                continue
            take[modality] = entry.path

    demographics_csv, summary_csv = _find_meta(root, meta)
    demographics = _demographics(demographics_csv) if demographics_csv else {}
    perceived = _perceived(summary_csv) if summary_csv else {}

    clips = []
    for stem, take in takes.items():
        actor, sentence, emotion, level = stem.split("_")
        extras = {"sentence": sentence, "level": LEVELS[level]}
        extras.update(demographics.get(actor, {}))
        extras.update(perceived.get(stem, {}))
        clips.append(
            Clip(
                id=stem,
                label=EMOTIONS[emotion],
                speaker=actor,
                audio=take.get("audio"),
                video=take.get("video"),
                text=SENTENCES[sentence],
                extras=extras,
            )
        )
    return DatasetScan(clips=clips, label_names=list(LABELS), skipped=skipped)


ADAPTER = Adapter(
    name="crema-d",
    description="CREMA-D: 91 actors, 12 English sentences, audio + video, perceived labels and demographics as extras",
    layout="ROOT/AudioWAV/*.wav, ROOT/VideoFlash/*.flv or ROOT/VideoMP4/*.mp4; <actor>_<sentence>_<emotion>_<level>",
    labels=LABELS,
    scan=scan,
    option_help={
        "meta": "folder holding VideoDemographics.csv and summaryTable.csv (default: ROOT)",
        "keep_broken": "keep the clips the CREMA-D README lists as broken (default: skip them)",
    },
)
