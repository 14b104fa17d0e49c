"""The CLI's one error boundary: EmoError is one line, anything unforeseen is one line plus a debug
hint (EMO_DEBUG=1 / --debug shows the traceback), and user strings never act as rich markup."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emo.cli import app
from synthetic_cache import make_synthetic_cache


def run(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "EMO_DEBUG": "", **(env or {})})


def one_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def odd_cache(tmp_path_factory):
    # Class names that look like rich markup: they must print as given, not style or crash the output.
    path = tmp_path_factory.mktemp("odd") / "odd.h5"
    make_synthetic_cache(path, classes=("a[/]", "[bold]b"), shapes={"audio": (1, 8)}, speakers=3, clips_per_speaker_class=3)
    return path


def test_unexpected_exception_is_one_line_with_a_debug_hint(monkeypatch, tmp_path):
    import emo.fusion

    def broken(*args, **kwargs):
        raise RuntimeError("boom [/] inside\nsecond line")

    monkeypatch.setattr(emo.fusion, "evaluate", broken)
    result = run("eval", tmp_path)
    assert result.exit_code == 1
    line = one_line(result)
    assert line.startswith("error: RuntimeError: boom [/] inside (an unexpected error; rerun with EMO_DEBUG=1")
    assert "second line" not in result.output

    debug = run("eval", tmp_path, env={"EMO_DEBUG": "1"})
    assert isinstance(debug.exception, RuntimeError)  # let through: Python prints the traceback
    flag = run("--debug", "eval", tmp_path)
    assert isinstance(flag.exception, RuntimeError)


def test_emo_errors_of_every_command_are_one_line(tmp_path):
    weird = tmp_path / "x[/]y"
    cases = [
        (("eval", weird), f"error: {weird}: not a run directory"),
        (("predict", weird, tmp_path / "a.wav"), f"error: {tmp_path / 'a.wav'}: no such file"),
        (("runs", weird), f"error: {weird}: no such directory"),
        (("datasets", "--name", "nope[/]"), "error: unknown dataset"),
        (("fit", weird, "--head", "nope", "--out", tmp_path / "r"), "error: "),
        (("cache", "info", weird), "error: "),
        (("runs", tmp_path), "error: no run directories"),  # a command's own EmoError: the same one line
        (("sweep", tmp_path, "--head", "audio", "--seeds", "x", "--out", tmp_path / "s"), "error: --seeds 'x'"),
    ]
    for args, start in cases:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert one_line(result).startswith(start), (args, result.output)


def test_keyboard_interrupt_is_one_line(monkeypatch, tmp_path):
    import emo.fusion

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(emo.fusion, "summarize_runs", interrupted)
    result = run("runs", tmp_path)
    assert result.exit_code == 130 and one_line(result) == "error: interrupted"


def test_markup_in_class_names_and_paths_prints_verbatim(odd_cache, tmp_path):
    out = tmp_path / "run[/]x"
    result = run("fit", odd_cache, "--head", "audio", "--out", out, "--epochs", "1", "--set", "d_model=8",
                 "--set", "heads=2", "--set", "ffn=8", "--set", "blocks=1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "a[/]" in result.output and "[bold]b" in result.output and str(out) in result.output
    result = run("runs", tmp_path)
    assert result.exit_code == 0, result.output
    assert "run[/]x" in result.output
    result = run("eval", out)
    assert result.exit_code == 0 and "[bold]b" in result.output, result.output


@pytest.mark.parametrize("rank", [0, 1])
def test_extract_error_under_torchrun_is_printed_by_rank_0_before_the_ranks_leave(monkeypatch, tmp_path, rank):
    import emo.cli_errors
    import emo.extract.run.distributed
    import emo.extract.run.local
    from emo.errors import EmoError

    events = []

    def failing(*args, **kwargs):
        raise EmoError("tiny: weights unreadable")

    printing = emo.cli_errors.print_error
    monkeypatch.setattr(emo.extract, "run_extraction", failing)
    monkeypatch.setattr(emo.extract.run.distributed, "end_distributed", lambda: events.append("leave"))
    monkeypatch.setattr(emo.cli_errors, "print_error", lambda message: (events.append("print"), printing(message)))
    torchrun = {"WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"}
    result = run("extract", "manifest", tmp_path, "-o", tmp_path / "c.h5", "--device", "cpu", env=torchrun)
    assert result.exit_code == 1
    if rank == 0:  # the one line, then the ranks leave together (torchrun may end rank 0 once another exits)
        assert one_line(result) == "error: tiny: weights unreadable" and events == ["print", "leave"]
    else:
        assert result.output.strip() == "" and events == ["leave"]
