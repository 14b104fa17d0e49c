"""MEAD: talking faces in 8 emotions, 3 intensity levels, 7 camera views.

Two layouts are accepted, mixed freely under ROOT:
- flat: `<speaker>_<view>_<emotion>_level<k>_<nnn>.mp4` (e.g. M030_front_angry_level3_001.mp4);
- MEAD's own: `<speaker>/video/<view>/<emotion>/level_<k>/<nnn>.mp4`, with the take's sound
  in `<speaker>/audio/<emotion>/level_<k>/<nnn>.m4a` (shared by every view) joined as audio.
"""

from __future__ import annotations

import re
from pathlib import Path

from emo.clip import Clip
from emo.extract.datasets.base import Adapter, DatasetScan, as_list, list_files, require_folder, unknown_code

LABELS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
SPEAKER = re.compile(r"^[MW]\d{3}$")
# Views such as left_30 contain an underscore, hence the optional _<digits>.
FLAT = re.compile(r"^([MW]\d{3})_([a-z]+(?:_\d+)?)_([a-z]+)_level_?(\d+)_(\d{3})$")
LEVEL_FOLDER = re.compile(r"^level_(\d+)$")
TAKE = re.compile(r"^\d{3}$")


def _nested(path: Path, kind: str) -> tuple[str, ...] | None:
    """(speaker, [view,] emotion, level, take) from MEAD's own folder layout, or None."""
    depth = 6 if kind == "video" else 5  # speaker/video/view/emotion/level_k/nnn vs speaker/audio/emotion/level_k/nnn
    parts = path.parts[-depth:]
    if len(parts) < depth or parts[1] != kind or not SPEAKER.match(parts[0]) or not TAKE.match(path.stem):
        return None
    level = LEVEL_FOLDER.match(parts[-2])
    if level is None:
        return None
    return (parts[0], *parts[2:-2], level.group(1), path.stem)


def scan(root: Path, *, view: str | list[str] | None = None) -> DatasetScan:
    require_folder(root, "MEAD")
    views = as_list(view, "view")
    skipped: list[tuple[str, str]] = []
    clips = []
    audio: dict[tuple[str, ...], str] = {}
    for entry in list_files(root, recursive=True, skipped=skipped):
        path = Path(entry.path)
        if entry.ext == "m4a":
            parsed = _nested(path, "audio")
            if parsed is None:
                skipped.append((entry.path, "audio not in <speaker>/audio/<emotion>/level_<k>/<nnn>.m4a"))
            elif parsed[1] not in LABELS:
                raise unknown_code(entry.path, "emotion", parsed[1], LABELS)
            elif entry.size == 0:
                skipped.append((entry.path, "empty file (0 bytes)"))
            else:
                audio[parsed] = entry.path
            continue
        if entry.ext != "mp4":
            skipped.append((entry.path, "not an .mp4 video (or .m4a audio)"))
            continue
        flat = FLAT.match(entry.stem)
        parsed = flat.groups() if flat else _nested(path, "video")
        if parsed is None:
            skipped.append(
                (entry.path, "name is not <speaker>_<view>_<emotion>_level<k>_<nnn> or <speaker>/video/<view>/...")
            )
            continue
        speaker, clip_view, emotion, level, take = parsed
        if emotion not in LABELS:
            raise unknown_code(entry.path, "emotion", emotion, LABELS)
        if views is not None and clip_view not in views:
            skipped.append((entry.path, f"view {clip_view!r} not selected (view={','.join(views)})"))
            continue
        if entry.size == 0:
            skipped.append((entry.path, "empty file (0 bytes)"))
            continue
        clips.append(
            Clip(
                id=f"{speaker}_{clip_view}_{emotion}_level{level}_{take}",
                label=emotion,
                speaker=speaker,
                video=entry.path,
                extras={"view": clip_view, "level": level},
            )
        )

    used: set[tuple[str, ...]] = set()
    for clip in clips:
        key = (clip.speaker, clip.label, clip.extras["level"], clip.id.rsplit("_", 1)[1])
        if key in audio:
            clip.audio = audio[key]
            used.add(key)
    skipped.extend((path, "no selected video of this take") for key, path in audio.items() if key not in used)
    return DatasetScan(clips=clips, label_names=list(LABELS), skipped=skipped)


ADAPTER = Adapter(
    name="mead",
    description="MEAD: talking-face video, 8 emotions x 3 levels x 7 views (audio joined in the nested layout)",
    layout=(
        "ROOT/<speaker>_<view>_<emotion>_level<k>_<nnn>.mp4 "
        "or ROOT/<speaker>/video/<view>/<emotion>/level_<k>/<nnn>.mp4"
    ),
    labels=LABELS,
    scan=scan,
    option_help={"view": "comma-separated views to keep, e.g. front (default: all)"},
)
