"""Scale-out extraction: torchrun processes (gloo on CPU) and --shard runs + `emo cache merge`
give the very cache one process gives; a rank that cannot load stops every rank."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emo.cache import CacheReader
from emo.errors import EmoError
from emo.extract.run.distributed import distributed_context, rank_device, shard_cache_path, stale_shard_paths

KCBERT_VOCAB = "korean_tokenizers/kcbert-base/vocab.txt"
TORCHRUN_TIMEOUT_S = 420  # two processes importing torch + transformers on a busy 2-core machine


# -- the torchrun environment ------------------------------------------------------------
def test_context_comes_from_torchruns_variables_and_one_process_is_not_distributed():
    assert distributed_context({}) is None
    assert distributed_context({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is None
    context = distributed_context({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (context.rank, context.world_size, context.local_rank, context.local_world_size) == (3, 4, 1, 2)
    assert not context.is_main
    with pytest.raises(EmoError, match="RANK is unset"):
        distributed_context({"WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(EmoError, match="outside"):
        distributed_context({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0"})


def test_shard_files_sit_beside_the_cache_and_stale_ones_are_found(tmp_path):
    cache = tmp_path / "kor.h5"
    assert shard_cache_path(cache, 1, 4) == tmp_path / "kor.rank1of4.h5"
    for name in ("kor.rank0of2.h5", "kor.rank1of2.h5", "kor.rank0of4.h5", "other.rank0of4.h5"):
        (tmp_path / name).touch()
    assert stale_shard_paths(cache, 4) == [tmp_path / "kor.rank0of2.h5", tmp_path / "kor.rank1of2.h5"]


def test_each_rank_gets_its_own_device():
    import torch

    context = distributed_context({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert rank_device("cpu", context) == "cpu"
    if not torch.cuda.is_available():
        assert rank_device(None, context) == "cpu"
    else:
        assert rank_device(None, context) == rank_device("cuda", context) == f"cuda:{1 % torch.cuda.device_count()}"


def test_default_workers_share_the_cores_among_a_nodes_processes(monkeypatch):
    from emo.extract.options import default_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 3


def test_shard_option_under_torchrun_is_refused(monkeypatch, tmp_path):
    from emo.extract import run_extraction

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(EmoError, match="--shard and torchrun"):
        run_extraction("manifest", tmp_path, tmp_path / "c.h5", shard=(0, 2))


# -- real data: 40 Korean clips, log-mel audio + a tiny ELECTRA on the real KcBERT vocabulary ---
@pytest.fixture(scope="module")
def korean(tmp_path_factory, shared_data):
    """Manifests of 40 and of their first 20 clips, a tiny text model, and the one-process cache."""
    from tiny_models import save_tiny_electra

    from emo.extract.datasets import load_clips

    folder = tmp_path_factory.mktemp("korean")
    clips = load_clips("kor-emotion", shared_data / "kor_emotiontts").clips[::7][:40]  # every speaker, every label
    manifests = {}
    for count in (40, 20):
        manifests[count] = folder / f"m{count}.csv"
        with open(manifests[count], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "label", "speaker", "audio", "text"])
            writer.writerows([c.id, c.label, c.speaker, c.audio, c.text] for c in clips[:count])
    assert len({c.label for c in clips[:20]}) == 4  # the smaller manifest has the same label set
    text_model = save_tiny_electra(folder / "electra", vocab_file=shared_data / KCBERT_VOCAB)
    # The manifest names the shared data by absolute path: outside its own folder, so allowed explicitly.
    args = ["--audio-backbone", "logmel", "--text-backbone", str(text_model), "--device", "cpu", "--quiet",
            "--allow-outside-paths"]
    reference = folder / "one-process.h5"
    result = invoke("extract", "manifest", str(manifests[40]), "-o", str(reference), *args)
    assert result.exit_code == 0, result.output
    return {"manifests": manifests, "args": args, "reference": reference, "ids": sorted(c.id for c in clips)}


def invoke(*args: str):
    from typer.testing import CliRunner

    from emo.cli import app

    return CliRunner().invoke(app, list(args))


def torchrun(*args: str, launch: list[str] | None = None, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    command += launch or ["-m", "emo"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=TORCHRUN_TIMEOUT_S)


def assert_same_cache(path: Path, reference: Path) -> None:
    """Same clips and labels, same modalities, fingerprints and recorded options, bit-identical rows."""
    got, want = CacheReader(path), CacheReader(reference)
    assert sorted(got.clips.ids) == sorted(want.clips.ids)
    labels = lambda r: {c: r.clips.label_names[i] for c, i in zip(r.clips.ids, r.clips.labels)}  # noqa: E731
    assert labels(got) == labels(want)
    assert got.modalities == want.modalities
    for modality in want.modalities:
        assert got.fingerprint(modality) == want.fingerprint(modality)
        assert got.info(modality).options == want.info(modality).options
        assert sorted(got.ok_ids(modality)) == sorted(want.ok_ids(modality)) == sorted(want.clips.ids)
        a, b = got.load(modality, clips=want.clips.ids), want.load(modality)
        assert a.ids == b.ids
        for i in range(len(b)):
            assert a[i].dtype == np.float16 and np.array_equal(a[i], b[i]), (modality, b.ids[i])


def summary_row(output: str, modality: str) -> list[str]:
    """The cells of a modality's row in the summary table."""
    line = next(line for line in output.splitlines() if re.match(rf"\W*{modality}\s+│", line))
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def test_two_torchrun_processes_give_the_cache_one_process_gives(korean, tmp_path):
    cache = tmp_path / "kor.h5"
    run = torchrun("extract", "manifest", str(korean["manifests"][40]), "-o", str(cache), *korean["args"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert_same_cache(cache, korean["reference"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kor.h5"]  # shard files merged, then removed
    assert "40 clips, 2 processes" in run.stdout
    assert summary_row(run.stdout, "audio")[2:4] == ["new", "40"]


def test_torchrun_resumes_an_existing_cache_and_a_killed_runs_shard(korean, tmp_path):
    cache = tmp_path / "kor.h5"
    first = invoke("extract", "manifest", str(korean["manifests"][20]), "-o", str(cache), "--modalities", "audio", *korean["args"])
    assert first.exit_code == 0, first.output
    # What a killed torchrun run leaves: rank 1's shard cache, here with its text done.
    leftover = invoke(
        "extract", "manifest", str(korean["manifests"][40]), "-o", str(tmp_path / "kor.rank1of2.h5"), "--shard", "1/2",
        "--modalities", "text", *korean["args"],
    )
    assert leftover.exit_code == 0, leftover.output

    # 20 more clips, and a modality the cache does not have yet.
    run = torchrun("extract", "manifest", str(korean["manifests"][40]), "-o", str(cache), *korean["args"])
    assert run.returncode == 0, run.stdout + run.stderr
    # modality, backbone, cache, extracted, kept, missing, failed: nothing already done was redone.
    assert summary_row(run.stdout, "audio")[2:7] == ["kept", "20", "20", "0", "0"]
    assert summary_row(run.stdout, "text")[2:7] == ["new", "20", "20", "0", "0"]
    assert "clip table: 20 added" in run.stdout  # rank 0 reports what the rerun changed in the table
    assert_same_cache(cache, korean["reference"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kor.h5"]


FAILING_RANK = """
import os
from emo.errors import BackboneError
import emo.extract.run.local as runner

load = runner.build_extractor

def build_extractor(modality, options, device):
    if os.environ["RANK"] == "1" and modality == "text":
        raise BackboneError("tiny-electra: weights unreadable on this node")
    return load(modality, options, device)

runner.build_extractor = build_extractor
from emo.cli import app
app(prog_name="emo")
"""


def test_a_rank_whose_extractor_cannot_load_stops_every_rank_with_its_reason(korean, tmp_path):
    script = tmp_path / "emo_failing_rank.py"
    script.write_text(FAILING_RANK)
    cache = tmp_path / "out" / "kor.h5"
    run = torchrun("extract", "manifest", str(korean["manifests"][40]), "-o", str(cache), *korean["args"], launch=[str(script)])
    assert run.returncode != 0  # and it returned: rank 0 did not wait for rank 1 forever
    assert "failed on rank 1 of 2: tiny-electra: weights unreadable on this node" in run.stdout + run.stderr
    assert "Traceback" not in run.stdout
    assert not cache.parent.exists() or not any(cache.parent.iterdir())  # no cache, no shard started


def test_shard_runs_merged_with_emo_cache_merge_equal_one_run(korean, tmp_path):
    shards = []
    for index in range(2):
        shards.append(tmp_path / f"shard{index}.h5")
        result = invoke(
            "extract", "manifest", str(korean["manifests"][40]), "-o", str(shards[-1]), "--shard", f"{index}/2", *korean["args"]
        )
        assert result.exit_code == 0, result.output
        assert len(CacheReader(shards[-1]).clips) == 20
    merged = invoke("cache", "merge", *map(str, shards), "-o", str(tmp_path / "merged.h5"))
    assert merged.exit_code == 0, merged.output
    assert_same_cache(tmp_path / "merged.h5", korean["reference"])


def test_the_runner_never_imports_the_torchrun_layer_above_it():
    """One way only: entry -> distributed -> runner. A runner that imported back (as the old
    dispatcher inside runner did) would make the two modules one tangle again."""
    import ast

    import emo.extract.run.local

    tree = ast.parse(Path(emo.extract.run.local.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not imported & {"emo.extract.run.distributed", "emo.extract.run.dispatch", "emo.extract"}
