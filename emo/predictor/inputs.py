"""The files given to `emo predict` -> one Clip record per clip to score.

The rule, kept short so that it can be stated in `--help`:
  * each FILE is one clip: a video gives the faces and its own audio track, an audio file
    gives the audio;
  * a video and an audio file with the same name stem (`x.mp4 x.wav`, any folders) are one
    clip: faces from the video, audio from the audio file -- how the dataset adapters pair
    them at extraction, so a training clip given this way gets its training input back;
  * `pair=True` (`--pair`) takes the files two by two instead, one video and one audio each;
  * transcripts come separately (`--text`): one for a single clip, or one per clip in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from emo.clip import Clip
from emo.errors import EmoError

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".flv", ".webm", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts", ".mts"}
)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aiff", ".aif", ".au",
     ".caf", ".w64"}
)

FileArg = Union[str, Path]
ClipArg = Union[FileArg, Sequence[FileArg]]  # a file, or the (video, audio) files of one clip


@dataclass
class ClipFiles:
    """One clip to score: its video and/or audio file and its transcript."""

    video: str | None
    audio: str | None
    text: str | None = None

    @property
    def files(self) -> list[str]:
        return [f for f in (self.video, self.audio) if f]

    @property
    def name(self) -> str:
        """How messages and tables name the clip: its file, or both files joined by ' + '."""
        return " + ".join(self.files)

    def to_clip(self, index: int) -> Clip:
        stem = Path(self.files[0]).stem
        return Clip(id=f"{index}:{stem}", label="", speaker="", audio=self.audio, video=self.video, text=self.text)


def file_kind(path: FileArg) -> str:
    """'video' or 'audio' by extension; EmoError (naming the file) for anything else or a missing file."""
    path = Path(path)
    if not path.is_file():
        raise EmoError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    raise EmoError(
        f"{path}: unknown media type {suffix or '(no extension)'!r}; "
        f"give a video ({', '.join(sorted(VIDEO_SUFFIXES)[:5])}, ...) or an audio file (.wav, .flac, .mp3, ...)"
    )


def _explicit(group: Sequence[FileArg]) -> ClipFiles:
    """An explicit (video, audio) group: one of each, in any order."""
    kinds = {}
    for path in group:
        kind = file_kind(path)
        if kind in kinds:
            raise EmoError(f"{', '.join(map(str, group))}: a clip takes one video and one audio file, got two {kind} files")
        kinds[kind] = str(path)
    return ClipFiles(video=kinds.get("video"), audio=kinds.get("audio"))


def group_files(files: Sequence[ClipArg] | FileArg, pair: bool = False) -> list[ClipFiles]:
    """Files -> clips by the rule above, in the order of each clip's first file.

    An item that is itself a list/tuple is one clip as given (the Python API's explicit pairing).
    """
    if isinstance(files, (str, Path)):
        files = [files]
    files = list(files)
    if not files:
        raise EmoError("no files to score")
    if pair:
        if any(not isinstance(f, (str, Path)) for f in files):
            raise EmoError("--pair takes a flat list of files")
        if len(files) % 2:
            raise EmoError(f"--pair takes the files two by two (a video and an audio file each); got {len(files)} files")
        return [_explicit(files[i : i + 2]) for i in range(0, len(files), 2)]

    clips: list[ClipFiles] = []
    by_stem: dict[str, ClipFiles] = {}
    for item in files:
        if not isinstance(item, (str, Path)):
            clips.append(_explicit(list(item)))
            continue
        kind = file_kind(item)
        stem = Path(item).stem
        partner = by_stem.get(stem)
        if partner is not None and getattr(partner, kind) is None:
            setattr(partner, kind, str(item))
            continue
        if partner is not None:
            raise EmoError(
                f"{getattr(partner, kind)}, {item}: two {kind} files named {stem!r}; same-name files form one clip "
                "(a video and an audio file), so score them in separate calls or use --pair"
            )
        clip = ClipFiles(video=str(item) if kind == "video" else None, audio=str(item) if kind == "audio" else None)
        by_stem[stem] = clip
        clips.append(clip)
    return clips


def attach_texts(clips: list[ClipFiles], text: str | Sequence[str | None] | None) -> list[ClipFiles]:
    """One transcript for a single clip, or one per clip (None / "" = no transcript for that clip)."""
    if text is None:
        return clips
    texts = [text] if isinstance(text, str) else list(text)
    if len(texts) != len(clips):
        raise EmoError(
            f"{len(texts)} transcript(s) for {len(clips)} clip(s): give one --text per clip, in the clips' order"
        )
    for clip, value in zip(clips, texts):
        clip.text = value or None
    return clips
