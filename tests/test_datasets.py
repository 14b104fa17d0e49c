"""Dataset adapters: generated file trees named like the real datasets, and the real data when present."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from emo.errors import DatasetError
from emo.extract.datasets import get_adapter, list_adapters, load_clips

FOLDER_ADAPTERS = ["crema-d", "kor-emotion", "ravdess", "emodb", "mead"]


def touch(path: Path, data: bytes = b"\0") -> Path:
    """A stand-in media file: adapters read names and sizes only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def reasons(scan) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in scan.skipped}


# ---- registry and common checks -------------------------------------------------------


def test_registry_lists_every_adapter_with_layout():
    names = [name for name, _, _ in list_adapters()]
    assert names == ["crema-d", "kor-emotion", "ravdess", "emodb", "mead", "manifest"]
    for name, description, layout in list_adapters():
        assert description and layout
        assert get_adapter(name).name == name


def test_unknown_adapter_and_option_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'iemocap'.*crema-d"):
        get_adapter("iemocap")
    touch(tmp_path / "03a01Fa.wav")
    with pytest.raises(DatasetError, match="no option channel"):
        load_clips("emodb", tmp_path, channel="song")


@pytest.mark.parametrize("name", FOLDER_ADAPTERS + ["manifest"])
def test_missing_root_is_an_error_naming_it(tmp_path, name):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(str(root))):
        load_clips(name, root)


@pytest.mark.parametrize("name", FOLDER_ADAPTERS)
def test_empty_folder_is_an_error_naming_it(tmp_path, name):
    root = tmp_path / "empty"
    (root / "AudioWAV").mkdir(parents=True)  # CREMA-D needs its media folder to get as far as "no clips"
    with pytest.raises(DatasetError, match=f"{re.escape(str(root))}.*no .*(clips|folder)"):
        load_clips(name, root)


def test_folder_of_only_unusable_files_says_why(tmp_path):
    touch(tmp_path / "wav" / "notes.txt")
    touch(tmp_path / "wav" / "hello.wav")
    with pytest.raises(DatasetError, match="no emodb clips.*2 file\\(s\\) skipped"):
        load_clips("emodb", tmp_path)


# ---- CREMA-D --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cremad_names(shared_data) -> list[str]:
    with open(shared_data / "cremad_meta" / "SentenceFilenames.csv", newline="") as handle:
        return [row["Filename"] for row in csv.DictReader(handle)]


def test_cremad_generated_tree_with_real_metadata(tmp_path, shared_data, cremad_names):
    names = cremad_names[:200]
    for name in names:
        touch(tmp_path / "AudioWAV" / f"{name}.wav")
    for name in names[:100]:
        touch(tmp_path / "VideoMP4" / f"{name}.mp4")
    touch(tmp_path / "VideoFlash" / f"{names[0]}.flv")  # MP4 of the same clip wins
    video_only = "1091_WSI_FEA_XX"
    touch(tmp_path / "VideoFlash" / f"{video_only}.flv")
    touch(tmp_path / "AudioWAV" / "1001_DFA_NEU_XX (copy).wav")
    touch(tmp_path / "AudioWAV" / "desktop.ini")
    touch(tmp_path / "AudioWAV" / "1090_DFA_SAD_XX.wav", b"")  # zero bytes

    scan = load_clips("crema-d", tmp_path, meta=shared_data / "cremad_meta")
    assert scan.label_names == ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    assert len(scan.clips) == 201
    assert [c.id for c in scan.clips] == sorted(names + [video_only])
    skipped = reasons(scan)
    assert "<actor>_<sentence>_<emotion>_<level>" in skipped["1001_DFA_NEU_XX (copy).wav"]
    assert "not a .wav" in skipped["desktop.ini"]
    assert "empty" in skipped["1090_DFA_SAD_XX.wav"]
    assert f"{names[0]}.mp4" in skipped[f"{names[0]}.flv"]

    clips = {c.id: c for c in scan.clips}
    first = clips["1001_IEO_NEU_XX"]
    assert first.label == "neutral" and first.speaker == "1001" and first.text == "It's eleven o'clock."
    assert first.audio == str(tmp_path / "AudioWAV" / "1001_IEO_NEU_XX.wav")
    assert first.video == str(tmp_path / "VideoMP4" / "1001_IEO_NEU_XX.mp4")
    audio_only = clips[names[150]]
    assert audio_only.audio and audio_only.video is None
    assert clips[video_only].audio is None and clips[video_only].label == "fear"
    assert clips[video_only].text == "We'll stop in a couple of minutes."
    assert Counter(c.label for c in scan.clips).keys() <= set(scan.label_names)

    # VideoDemographics.csv: 1001,51,"Male","Caucasian","Not Hispanic"; 1002,21,"Female",...
    assert {k: first.extras[k] for k in ("age", "sex", "race", "ethnicity")} == {
        "age": "51",
        "sex": "male",
        "race": "Caucasian",
        "ethnicity": "Not Hispanic",
    }
    assert clips["1002_IEO_HAP_LO"].extras["sex"] == "female"
    # summaryTable.csv: 1001_IEO_HAP_LO voice N 71.67, face H 57, multimodal H 57.38; 1002_IEO_HAP_LO voice F.
    hap_lo = clips["1001_IEO_HAP_LO"]
    assert hap_lo.label == "happy" and hap_lo.extras["level"] == "low"
    assert hap_lo.extras["perceived_voice"] == "neutral"
    assert hap_lo.extras["perceived_voice_level"] == "71.67"
    assert hap_lo.extras["perceived_face"] == "happy"
    assert hap_lo.extras["perceived_multimodal"] == "happy"
    assert hap_lo.extras["perceived_multimodal_level"] == "57.38"
    assert clips["1002_IEO_HAP_LO"].extras["perceived_voice"] == "fear"
    # A tie keeps both winners: 1001_IEO_ANG_MD voice "A:D".
    assert clips["1001_IEO_ANG_MD"].extras["perceived_voice"] == "angry:disgust"


def test_cremad_metadata_found_in_root_and_absent_without_it(tmp_path, shared_data):
    touch(tmp_path / "AudioWAV" / "1002_TSI_SAD_XX.wav")
    bare = load_clips("crema-d", tmp_path).clips[0]
    assert bare.extras == {"sentence": "TSI", "level": "unspecified"}
    assert bare.text == "The surface is slick."

    shutil.copy(shared_data / "cremad_meta" / "VideoDemographics.csv", tmp_path)
    (tmp_path / "processedResults").mkdir()
    shutil.copy(shared_data / "cremad_meta" / "summaryTable.csv", tmp_path / "processedResults")
    joined = load_clips("crema-d", tmp_path).clips[0]
    assert joined.extras["age"] == "21" and "perceived_face" in joined.extras


def test_cremad_meta_option_without_csvs_is_an_error(tmp_path):
    touch(tmp_path / "AudioWAV" / "1002_TSI_SAD_XX.wav")
    (tmp_path / "meta").mkdir()
    with pytest.raises(DatasetError, match="VideoDemographics.csv"):
        load_clips("crema-d", tmp_path, meta=tmp_path / "meta")


def test_cremad_unknown_emotion_code_is_an_error(tmp_path):
    touch(tmp_path / "AudioWAV" / "1001_IEO_NEU_XX.wav")
    bad = touch(tmp_path / "AudioWAV" / "1001_IEO_SUR_XX.wav")
    with pytest.raises(DatasetError, match=f"{re.escape(str(bad))}.*unknown emotion code 'SUR'"):
        load_clips("crema-d", tmp_path)


def test_cremad_known_broken_clips_skipped_unless_kept(tmp_path):
    for name in ("1076_MTI_SAD_XX", "1076_MTI_NEU_XX", "1001_IEO_NEU_XX"):
        touch(tmp_path / "AudioWAV" / f"{name}.wav")
        touch(tmp_path / "VideoFlash" / f"{name}.flv")
    scan = load_clips("crema-d", tmp_path)
    clips = {c.id: c for c in scan.clips}
    assert "1076_MTI_SAD_XX" not in clips  # both its audio and its video are broken
    assert clips["1076_MTI_NEU_XX"].audio and clips["1076_MTI_NEU_XX"].video is None
    assert "README" in reasons(scan)["1076_MTI_SAD_XX.wav"]
    kept = load_clips("crema-d", tmp_path, keep_broken="true")
    assert len(kept.clips) == 3 and all(c.video for c in kept.clips)


def test_cremad_all_real_names(tmp_path, shared_data, cremad_names):
    for name in cremad_names:
        touch(tmp_path / "AudioWAV" / f"{name}.wav")
    scan = load_clips("crema-d", tmp_path, meta=shared_data / "cremad_meta")
    assert len(scan.clips) == 7441  # 1076_MTI_SAD_XX.wav is known broken
    assert len({c.speaker for c in scan.clips}) == 91
    assert len({c.text for c in scan.clips}) == 12
    assert all("age" in c.extras and "perceived_voice" in c.extras for c in scan.clips)


# ---- Korean emotional speech ------------------------------------------------------------


def test_kor_emotion_real_data(shared_data):
    scan = load_clips("kor-emotion", shared_data / "kor_emotiontts")
    assert scan.label_names == ["neutral", "happy", "sad", "angry"]
    assert len(scan.clips) == 300 and not scan.skipped
    assert len({c.speaker for c in scan.clips}) == 15
    assert Counter(c.label for c in scan.clips) == {"neutral": 75, "happy": 75, "sad": 75, "angry": 75}
    clips = {c.id: c for c in scan.clips}
    # The corpus README swaps 2xx and 3xx; the scripts and acoustics say 2xx is sad.
    assert [clips[f"neo00{n}"].label for n in ("001", "101", "201", "301")] == ["neutral", "happy", "sad", "angry"]
    assert clips["neo00201"].text == "너한테 그 말을 들으니까 정말 마음이 아프다."
    assert clips["neo00201"].speaker == "neo"
    assert clips["neo00201"].extras["group"] == "emotional-to-emotional"
    assert clips["ema00001"].extras["group"] == "plain-to-emotional"
    assert all(c.text and not c.text.startswith("\ufeff") for c in scan.clips)
    assert all(c.audio and Path(c.audio).is_file() and c.video is None for c in scan.clips)
    # Same sentence -> same script key, across speakers (ne*) and across emotions (em*).
    assert clips["nea00201"].text == clips["neo00201"].text
    assert clips["nea00201"].extras["script"] == clips["neo00201"].extras["script"]
    assert clips["ema00001"].extras["script"] == clips["ema00101"].extras["script"]
    assert clips["ema00001"].extras["script"] != clips["nea00001"].extras["script"]
    # transcript/ spells numbers out; script/ writes digits.
    written = load_clips("kor-emotion", shared_data / "kor_emotiontts", text_source="script")
    assert "20명" in {c.id: c for c in written.clips}["ema00001"].text
    assert "이십명" in clips["ema00001"].text


def test_kor_emotion_generated_tree(tmp_path):
    speaker = tmp_path / "emotional-to-emotional" / "nea"
    touch(speaker / "wav" / "nea00001.wav")
    touch(speaker / "transcript" / "nea00001.txt", "\ufeff안녕하세요.\n".encode())
    touch(speaker / "wav" / "nea00102.wav")
    touch(speaker / "script" / "nea00102.txt", "\ufeff기뻐요.".encode())  # no transcript: script is the fallback
    touch(speaker / "wav" / "nea00399.wav")  # no text at all
    touch(speaker / "wav" / "nea_bad.wav")
    touch(speaker / "wav" / "neb00002.wav")
    touch(speaker / "wav" / "nea00003.mp3")
    scan = load_clips("kor-emotion", tmp_path)
    clips = {c.id: c for c in scan.clips}
    assert list(clips) == ["nea00001", "nea00102", "nea00399"]
    assert clips["nea00001"].text == "안녕하세요." and clips["nea00001"].label == "neutral"
    assert clips["nea00102"].text == "기뻐요." and clips["nea00102"].label == "happy"
    assert clips["nea00399"].text is None and clips["nea00399"].label == "angry"
    skipped = reasons(scan)
    assert "<speaker><5 digits>" in skipped["nea_bad.wav"]
    assert "'neb'" in skipped["neb00002.wav"]
    assert "not a .wav" in skipped["nea00003.mp3"]

    bad = touch(speaker / "wav" / "nea00401.wav")
    with pytest.raises(DatasetError, match=f"{re.escape(str(bad))}.*00401"):
        load_clips("kor-emotion", tmp_path)


# ---- RAVDESS ----------------------------------------------------------------------------


def test_ravdess_joins_modalities_of_a_take(tmp_path):
    audio_dir = tmp_path / "Audio_Speech_Actors_01-24" / "Actor_01"
    video_dir = tmp_path / "Video_Speech_Actor_01" / "Actor_01"
    touch(audio_dir / "03-01-06-02-01-02-01.wav")
    touch(video_dir / "01-01-06-02-01-02-01.mp4")
    touch(video_dir / "02-01-06-02-01-02-01.mp4")  # redundant video-only copy
    touch(video_dir / "02-01-01-01-02-01-01.mp4")  # only a video-only file
    touch(video_dir / "01-01-08-01-01-01-01.mp4")  # only the AV file: its own track is the audio
    touch(audio_dir / "03-02-03-01-01-01-01.wav")  # song
    touch(audio_dir / "03-01-01-01-01-01-01.mp4")  # audio-only take as mp4
    touch(audio_dir / "03-01-01-01-01-01-02.wav")  # actor 02 in Actor_01
    touch(audio_dir / "readme.txt")

    scan = load_clips("ravdess", tmp_path)
    assert len(scan.label_names) == 8 and scan.label_names[5] == "fearful"
    clips = {c.id: c for c in scan.clips}
    assert list(clips) == ["01-01-01-02-01-01", "01-06-02-01-02-01", "01-08-01-01-01-01"]
    fearful = clips["01-06-02-01-02-01"]
    assert fearful.label == "fearful" and fearful.speaker == "01"
    assert fearful.audio == str(audio_dir / "03-01-06-02-01-02-01.wav")
    assert fearful.video == str(video_dir / "01-01-06-02-01-02-01.mp4")
    assert fearful.text == "Kids are talking by the door."
    assert fearful.extras == {
        "channel": "speech",
        "intensity": "strong",
        "statement": "01",
        "repetition": "02",
        "sex": "male",
    }
    assert clips["01-01-01-02-01-01"].audio is None and clips["01-01-01-02-01-01"].video
    assert clips["01-01-01-02-01-01"].text == "Dogs are sitting by the door."
    surprised = clips["01-08-01-01-01-01"]
    assert surprised.label == "surprised" and surprised.audio == surprised.video
    skipped = reasons(scan)
    assert "video-only copy" in skipped["02-01-06-02-01-02-01.mp4"]
    assert "song" in skipped["03-02-03-01-01-01-01.wav"]
    assert ".wav or .flac" in skipped["03-01-01-01-01-01-01.mp4"]
    assert "Actor_01" in skipped["03-01-01-01-01-01-02.wav"]
    assert "MM-VV-EE-II-SS-RR-AA" in skipped["readme.txt"]

    song = load_clips("ravdess", tmp_path, channel="song")
    assert [c.id for c in song.clips] == ["02-03-01-01-01-01"] and song.clips[0].label == "happy"
    assert len(load_clips("ravdess", tmp_path, channel="both").clips) == 4


def test_ravdess_bad_codes_and_options(tmp_path):
    touch(tmp_path / "Actor_03" / "03-01-02-01-01-01-03.flac")
    assert load_clips("ravdess", tmp_path).clips[0].label == "calm"
    with pytest.raises(DatasetError, match="channel='speeches'"):
        load_clips("ravdess", tmp_path, channel="speeches")
    bad = touch(tmp_path / "Actor_03" / "03-01-09-01-01-01-03.wav")
    with pytest.raises(DatasetError, match=f"{re.escape(str(bad))}.*unknown emotion code '09'"):
        load_clips("ravdess", tmp_path)


# ---- EMO-DB -----------------------------------------------------------------------------


def test_emodb_wav_folder(tmp_path):
    for name in ("03a01Fa.wav", "16b10Lb.wav", "08a05Wa.flac", "11x99Nc.wav"):
        touch(tmp_path / "wav" / name)
    touch(tmp_path / "wav" / "erkennung.txt")
    touch(tmp_path / "wav" / "03a01F.wav")
    touch(tmp_path / "lablaut" / "03a01Fa.lab")  # other EMO-DB folders are not scanned
    scan = load_clips("emodb", tmp_path)
    assert scan.label_names == ["angry", "boredom", "disgust", "fear", "happy", "sad", "neutral"]
    clips = {c.id: c for c in scan.clips}
    assert list(clips) == ["03a01Fa", "08a05Wa", "11x99Nc", "16b10Lb"]
    assert clips["03a01Fa"].label == "happy" and clips["03a01Fa"].speaker == "03"
    assert clips["03a01Fa"].text == "Der Lappen liegt auf dem Eisschrank."
    assert clips["03a01Fa"].extras == {"text_code": "a01", "version": "a", "sex": "male", "age": "31"}
    assert clips["16b10Lb"].label == "boredom" and clips["16b10Lb"].extras["sex"] == "female"
    assert clips["08a05Wa"].label == "angry" and clips["08a05Wa"].audio.endswith(".flac")
    assert clips["11x99Nc"].text is None  # not one of the ten documented texts: no invented text
    assert set(reasons(scan)) == {"erkennung.txt", "03a01F.wav"}


def test_emodb_flat_root_and_unknown_emotion(tmp_path):
    touch(tmp_path / "09b03Ta.wav")
    scan = load_clips("emodb", tmp_path)
    assert scan.clips[0].label == "sad" and scan.clips[0].text.startswith("An den Wochenenden")
    bad = touch(tmp_path / "09b03Qa.wav")
    with pytest.raises(DatasetError, match=f"{re.escape(str(bad))}.*unknown emotion code 'Q'"):
        load_clips("emodb", tmp_path)


# ---- MEAD -------------------------------------------------------------------------------


def test_mead_real_data(shared_data):
    scan = load_clips("mead", shared_data / "face_video" / "mead")
    assert len(scan.clips) == 24 and len(scan.label_names) == 8
    assert Counter(c.label for c in scan.clips) == {label: 3 for label in scan.label_names}
    assert {c.speaker for c in scan.clips} == {"M030", "W009", "W011"}
    assert all(c.video and Path(c.video).is_file() and c.audio is None for c in scan.clips)
    clips = {c.id: c for c in scan.clips}
    assert clips["W009_front_neutral_level1_001"].extras == {"view": "front", "level": "1"}
    assert reasons(scan) == {"LICENSE": "not an .mp4 video (or .m4a audio)"}


def test_mead_nested_layout_views_and_audio(tmp_path):
    take = ("M003", "angry", "level_3", "007")
    touch(tmp_path / "M003" / "video" / "front" / "angry" / "level_3" / "007.mp4")
    touch(tmp_path / "M003" / "video" / "left_30" / "angry" / "level_3" / "007.mp4")
    touch(tmp_path / "M003" / "audio" / "angry" / "level_3" / "007.m4a")
    touch(tmp_path / "M003" / "audio" / "sad" / "level_1" / "001.m4a")  # no video of this take
    touch(tmp_path / "W015_right_60_surprised_level2_004.mp4")
    touch(tmp_path / "M003" / "video" / "front" / "angry" / "007.mp4")  # no level folder
    scan = load_clips("mead", tmp_path)
    clips = {c.id: c for c in scan.clips}
    assert list(clips) == [
        "M003_front_angry_level3_007",
        "M003_left_30_angry_level3_007",
        "W015_right_60_surprised_level2_004",
    ]
    audio = str(tmp_path.joinpath(take[0], "audio", *take[1:3], f"{take[3]}.m4a"))
    assert clips["M003_front_angry_level3_007"].audio == audio
    assert clips["M003_left_30_angry_level3_007"].audio == audio
    assert clips["M003_left_30_angry_level3_007"].extras == {"view": "left_30", "level": "3"}
    assert clips["W015_right_60_surprised_level2_004"].label == "surprised"
    assert sorted(reason for _, reason in scan.skipped) == [
        "name is not <speaker>_<view>_<emotion>_level<k>_<nnn> or <speaker>/video/<view>/...",
        "no selected video of this take",
    ]

    front = load_clips("mead", tmp_path, view="front")
    assert [c.id for c in front.clips] == ["M003_front_angry_level3_007"]
    bad = touch(tmp_path / "M003_front_bored_level1_001.mp4")
    with pytest.raises(DatasetError, match=f"{re.escape(str(bad))}.*unknown emotion code 'bored'"):
        load_clips("mead", tmp_path)


# ---- manifest ---------------------------------------------------------------------------


def write_manifest_media(root: Path) -> None:
    touch(root / "media" / "a.wav")
    touch(root / "media" / "b.mp4")


def test_manifest_csv(tmp_path):
    write_manifest_media(tmp_path)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "id,label,speaker,audio,video,text,duration,session\n"
        "c2,sad,s1,media/a.wav,,hello,1.5,S01\n"
        "c1,happy,s2,,media/b.mp4,,,S02\n"
        "c3,calm,s2,media/missing.wav,,,,S02\n"
        "c4,,s3,media/a.wav,,,,S03\n"
        "c5,sad,s3,,,,,S03\n",
        encoding="utf-8",
    )
    scan = load_clips("manifest", manifest)
    assert [c.id for c in scan.clips] == ["c1", "c2"]
    assert scan.label_names == ["happy", "sad"]
    c1, c2 = scan.clips
    assert c2.audio == str(tmp_path / "media" / "a.wav") and c2.video is None
    assert c2.text == "hello" and c2.duration == 1.5 and c2.extras == {"session": "S01"}
    assert c1.video == str(tmp_path / "media" / "b.mp4") and c1.audio is None and c1.text is None
    skipped = dict(scan.skipped)
    assert "missing.wav" in skipped[f"{manifest}:4"]
    assert skipped[f"{manifest}:5"] == "no label"
    assert skipped[f"{manifest}:6"] == "no audio, video or text"

    ordered = load_clips("manifest", tmp_path, labels="sad,happy,calm")  # a folder holding manifest.csv
    assert ordered.label_names == ["sad", "happy", "calm"]
    with pytest.raises(DatasetError, match=f"{re.escape(str(manifest))}:2.*'sad'"):
        load_clips("manifest", manifest, labels=["happy"])


def test_manifest_jsonl_and_errors(tmp_path):
    write_manifest_media(tmp_path)
    manifest = tmp_path / "clips.jsonl"
    rows = [
        {"id": "x", "label": "angry", "speaker": "s1", "audio": "media/a.wav", "take": 3, "tags": ["loud"]},
        {"id": "y", "label": "neutral", "speaker": "s2", "text": "fine", "take": None},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    scan = load_clips("manifest", manifest)
    clips = {c.id: c for c in scan.clips}
    assert clips["x"].extras == {"take": "3", "tags": '["loud"]'} and clips["y"].extras == {}
    assert clips["y"].text == "fine" and clips["y"].audio is None

    manifest.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[0]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="duplicate clip id 'x'.*lines 1 and 2"):
        load_clips("manifest", manifest)
    manifest.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"{re.escape(str(manifest))}:1"):
        load_clips("manifest", manifest)
    table = tmp_path / "bad.csv"
    table.write_text("id,emotion,speaker,audio\nx,sad,s1,media/a.wav\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"{re.escape(str(table))}: missing column.*label"):
        load_clips("manifest", table)
    with pytest.raises(DatasetError, match="no manifest.csv or manifest.jsonl"):
        load_clips("manifest", tmp_path / "media")


# ---- CLI --------------------------------------------------------------------------------


def test_cli_lists_adapters_and_details():
    from typer.testing import CliRunner

    from emo.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0
    for name, _, _ in list_adapters():
        assert name in listing.output
    assert "boredom" in listing.output
    detail = runner.invoke(app, ["datasets", "--name", "ravdess"], env={"COLUMNS": "200"})
    assert detail.exit_code == 0 and "channel" in detail.output and "'speech'" in detail.output
    unknown = runner.invoke(app, ["datasets", "--name", "iemocap"])
    assert unknown.exit_code == 1 and "unknown dataset" in unknown.output
