"""Damaged caches: every command refuses them with one "corrupt cache: <what>" line, never a traceback.

Each case damages a copy of a small synthetic cache the way a bad disk, a hand edit or
another tool would, then asks `cache info`, `cache verify`, `fit` and `eval` about it.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from emo.cache import CacheReader, CacheWriter
from emo.cli import app
from emo.errors import CacheError
from synthetic_cache import make_synthetic_cache

SHAPES = {"audio": (1, 8), "text": (1, 4)}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.h5"
    make_synthetic_cache(path, shapes=SHAPES, speakers=4, clips_per_speaker_class=2)
    return path


@pytest.fixture(scope="module")
def run_dir(good, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = CliRunner().invoke(app, ["fit", str(good), "--head", "audio", "--out", str(out), "--epochs", "1", "--quiet",
                                      "--set", "d_model=16", "--set", "heads=2", "--set", "blocks=1", "--set", "ffn=16"])
    assert result.exit_code == 0, result.output
    return out


def _set_attr(where, name, value):
    def damage(h5):
        h5[where].attrs[name] = value
    return damage


def _replace(where, values):
    def damage(h5):
        data = h5[where]
        stored = data[:]
        new = values(stored)
        del h5[where]
        h5[where] = new
    return damage


def _offsets_past_end(h5):
    offsets = h5["audio/offsets"][:]
    offsets[0, 1] = h5["audio/data"].shape[0] + 50
    h5["audio/offsets"][...] = offsets


def _label_out_of_range(h5):
    labels = h5["clips/label"][:]
    labels[3] = 99
    h5["clips/label"][...] = labels


def _unknown_status(h5):
    status = h5["audio/status"][:]
    status[2] = 7
    h5["audio/status"][...] = status


DAMAGES = {
    "fingerprint not JSON": (_set_attr("audio", "fingerprint", "{not json"), "audio fingerprint is not valid JSON"),
    "fingerprint a JSON list": (_set_attr("audio", "fingerprint", "[1, 2]"), "fingerprint is a JSON list, expected a JSON dict"),
    "fingerprint a number": (_set_attr("audio", "fingerprint", 5), "fingerprint is a int64, not JSON text"),
    "label set not JSON": (_set_attr("clips", "label_names", "angry,happy"), "label_names is not valid JSON"),
    "label set a JSON object": (_set_attr("clips", "label_names", '{"a": 1}'), "label_names is a JSON dict"),
    "label set of numbers": (_set_attr("clips", "label_names", "[1, 2, 3, 4]"), "label_names holds non-text entries"),
    "schema version text": (_set_attr("/", "schema_version", "one"), "schema_version is 'one', not an integer"),
    "schema version float": (_set_attr("/", "schema_version", 1.5), "schema_version is 1.5, not an integer"),
    "status too short": (_replace("audio/status", lambda s: s[:-3]), "audio status has shape"),
    "offsets past the end": (_offsets_past_end, "audio offsets point past the end of its data"),
    "label index out of range": (_label_out_of_range, "1 label indices outside the 4 labels"),
    "unknown status code": (_unknown_status, "1 clips with an unknown status code ([7])"),
    "row shape wrong": (_set_attr("audio", "row_shape", [3, 3]), "row_shape"),
}


@pytest.fixture(params=list(DAMAGES))
def damaged(request, good, tmp_path):
    damage, message = DAMAGES[request.param]
    path = tmp_path / "damaged.h5"
    shutil.copy(good, path)
    with h5py.File(path, "a") as h5:
        damage(h5)
    return path, message


def one_error_line(result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "corrupt cache: " in lines[0] and message in lines[0], lines[0]


def test_damaged_attributes_are_corrupt_cache_errors_in_every_command(damaged, run_dir, tmp_path):
    path, message = damaged
    with pytest.raises(CacheError, match="corrupt cache: "):
        CacheReader(path)
    runner = CliRunner()
    wide = {"COLUMNS": "400"}
    one_error_line(runner.invoke(app, ["cache", "info", str(path)], env=wide), message)
    one_error_line(runner.invoke(app, ["cache", "verify", str(path)], env=wide), message)
    one_error_line(runner.invoke(app, ["fit", str(path), "--head", "audio", "--out", str(tmp_path / "r"), "--epochs", "1"], env=wide), message)
    one_error_line(runner.invoke(app, ["eval", str(run_dir), str(path)], env=wide), message)
    with pytest.raises(CacheError, match="corrupt cache: "):  # a writer does not resume a damaged cache either
        CacheWriter(path)


def test_zeroed_feature_bytes_fail_the_checksum_in_verify_and_fit(good, tmp_path):
    path = tmp_path / "zeroed.h5"
    shutil.copy(good, path)
    with h5py.File(path, "r") as h5:
        data = h5["audio/data"]
        assert data.fletcher32
        offset = data.id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 16 : offset + 80] = bytes(64)  # zeros inside the first chunk of audio features
    path.write_bytes(bytes(raw))

    runner = CliRunner()
    result = runner.invoke(app, ["cache", "verify", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "audio: unreadable data" in result.output, result.output
    assert "ok" not in result.output.split()
    result = runner.invoke(app, ["fit", str(path), "--head", "audio", "--out", str(tmp_path / "r"), "--epochs", "1"],
                           env={"COLUMNS": "400"})
    one_error_line(result, "unreadable audio data")
    assert runner.invoke(app, ["cache", "verify", str(good)]).exit_code == 0


def test_non_finite_features_are_never_stored_and_an_older_cache_holding_them_is_refused(good, tmp_path):
    path = tmp_path / "nan.h5"
    shutil.copy(good, path)
    reader = CacheReader(path)
    first = reader.clips.ids[0]
    with CacheWriter(path) as writer:
        writer.open_modality("visual", {"backbone": "v"}, (1, 4), "float16")
        for bad in (np.nan, np.inf, 1e6):  # 1e6 overflows float16 to inf
            with pytest.raises(CacheError, match=f"clip '{first}' visual holds NaN/inf"):
                writer.write("visual", {first: np.full((3, 1, 4), bad, np.float32)})
    assert CacheReader(path).ok_ids("visual") == []

    with h5py.File(path, "a") as h5:  # as a writer before this check (or a damaged chunk) left it
        data = h5["audio/data"][:]
        data[5, 0, 2] = np.nan
        h5["audio/data"][...] = data
    runner = CliRunner()
    result = runner.invoke(app, ["fit", str(path), "--head", "audio", "--out", str(tmp_path / "r"), "--epochs", "1"],
                           env={"COLUMNS": "400"})
    one_error_line(result, "audio holds non-finite values (NaN/inf) in 1 rows")
    result = runner.invoke(app, ["cache", "verify", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and "audio: 1 NaN/inf feature values" in result.output


def _systematic_damages(path):
    """Every dataset deleted / replaced by a scalar, a group, wrong-typed or empty data; every
    attribute set to each wrong JSON or numpy type, or deleted: ~200 damaged caches."""
    found = []
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: found.append((name, isinstance(obj, h5py.Dataset))))
        attrs = [("/", key) for key in h5.attrs] + [(name, key) for name, _ in found for key in h5[name].attrs]

    def swap(name, make):
        def damage(h5):
            del h5[name]
            make(h5, name)
        return damage

    damages = []
    for name, is_dataset in found:
        damages.append((f"{name} deleted", lambda h5, n=name: h5.__delitem__(n)))
        damages.append((f"{name} a scalar", swap(name, lambda h5, n: h5.create_dataset(n, data=5))))
        damages.append((f"{name} a group", swap(name, lambda h5, n: h5.create_group(n))))
        if is_dataset:
            damages.append((f"{name} 2-D floats", swap(name, lambda h5, n: h5.create_dataset(n, data=np.zeros((3, 3))))))
            damages.append((f"{name} text", swap(name, lambda h5, n: h5.create_dataset(n, data=np.array(["x"] * 3, dtype=object), dtype=h5py.string_dtype()))))
            damages.append((f"{name} empty", swap(name, lambda h5, n: h5.create_dataset(n, shape=(0,), dtype="i8"))))
    values = {"int": 3, "float": 2.5, "text": "zzz", "JSON list": "[1]", "JSON object": '{"a": 1}', "array": np.arange(3),
              "negative": -1, "bad bytes": np.bytes_(b"\xff\xfe")}
    for where, key in attrs:
        for kind, value in values.items():
            damages.append((f"{where} attr {key} = {kind}", lambda h5, w=where, k=key, v=value: h5[w].attrs.__setitem__(k, v)))
        damages.append((f"{where} attr {key} deleted", lambda h5, w=where, k=key: h5[w].attrs.__delitem__(k)))
    return damages


def test_no_structural_damage_ends_in_anything_but_a_clear_error(tmp_path):
    from emo.cache.inspect import summarize, verify
    from emo.errors import EmoError

    good = tmp_path / "good.h5"
    make_synthetic_cache(good, shapes={"audio": (1, 8), "faces": (8, 8, 3)}, speakers=2, clips_per_speaker_class=1)
    damages = _systematic_damages(good)
    assert len(damages) > 150
    unexpected, refused = [], 0
    for label, damage in damages:
        path = tmp_path / "damaged.h5"
        shutil.copy(good, path)
        with h5py.File(path, "a") as h5:
            damage(h5)
        for step in (lambda: summarize(path), lambda: verify(path), lambda: CacheWriter(path).close(),
                     lambda: [CacheReader(path).load(m) for m in CacheReader(path).modalities]):
            try:
                step()
            except EmoError:
                refused += 1
            except Exception as exc:  # a traceback the user would have seen
                unexpected.append(f"{label}: {type(exc).__name__}: {exc}")
    assert unexpected == []
    assert refused > len(damages)  # most damages are refused, by several commands each
