"""The `emo` command. Thin: parse options, call the library, print with rich.

Heavy imports (torch, transformers, h5py, av...) live inside the commands so that
`emo --help` starts instantly. Each command section below is owned by one stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    help="emo: emotion recognition from speech, faces and transcripts. "
    "`emo extract` caches frozen-encoder sequences once; `emo fit` trains fusion heads from the cache in seconds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(help="Inspect, verify and merge HDF5 feature caches.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit non-zero (no traceback for expected bad input)."""
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# ---- datasets (emo/extract/datasets) -------------------------------------------------
# <datasets-section>
# </datasets-section>


# ---- cache (emo/cache) --------------------------------------------------------------
# <cache-section>
@cache_app.command("info")
def cache_info(cache: Path = typer.Argument(..., help="An emo HDF5 cache file.")) -> None:
    """Clips, labels, speakers, per-modality shapes, frames, fingerprint, failures and size."""
    import json

    from rich.console import Console
    from rich.table import Table

    from emo.cache.inspect import file_size, label_counts, summarize
    from emo.errors import EmoError

    try:
        reader, summaries = summarize(cache)
    except EmoError as exc:
        fail(str(exc))
    console = Console()
    clips = reader.clips
    console.print(
        f"[bold]{cache}[/]  dataset [cyan]{reader.dataset}[/]  {len(clips)} clips, "
        f"{len(set(clips.speakers))} speakers, {file_size(cache) / 1e6:.1f} MB, "
        f"emo {reader.emo_version}, created {reader.created}"
    )
    console.print("labels: " + ", ".join(f"{k} {v}" for k, v in label_counts(reader).items()))
    table = Table("modality", "row shape", "dtype", "ok", "missing", "failed", "pending", "frames mean/max", "backbone")
    for s in summaries:
        table.add_row(
            s.name, "x".join(map(str, s.row_shape)), s.dtype, str(s.counts["ok"]), str(s.counts["missing"]),
            str(s.counts["failed"]), str(s.counts["pending"]), f"{s.frames_mean:.1f} / {s.frames_max}",
            str(s.fingerprint.get("backbone", s.fingerprint.get("detector", ""))),
        )
    console.print(table)
    for s in summaries:
        console.print(f"[bold]{s.name}[/] fingerprint: {json.dumps(s.fingerprint, sort_keys=True)}", highlight=False)
        for clip_id, status, reason in s.first_failures:
            console.print(f"  {status} {clip_id}: {reason}", highlight=False)


@cache_app.command("verify")
def cache_verify(cache: Path = typer.Argument(..., help="An emo HDF5 cache file.")) -> None:
    """Check structure and read every stored row; exit 1 when anything is wrong."""
    from rich.console import Console

    from emo.cache.inspect import verify
    from emo.errors import EmoError

    try:
        problems = verify(cache)
    except EmoError as exc:
        fail(str(exc))
    if problems:
        for problem in problems:
            Console(stderr=True, soft_wrap=True).print(f"[red]{cache}:[/] {problem}", highlight=False)
        raise typer.Exit(1)
    Console().print(f"[green]ok[/] {cache}")


@cache_app.command("merge")
def cache_merge(
    shards: List[Path] = typer.Argument(..., help="Shard caches written by `emo extract --shard I/N` (or torchrun ranks)."),
    out: Path = typer.Option(..., "-o", "--out", help="The merged cache to write."),
) -> None:
    """Merge shard caches into one: every clip once, fingerprints must agree."""
    from rich.console import Console

    from emo.cache.merge import merge_caches
    from emo.errors import EmoError

    try:
        summary = merge_caches(shards, out)
    except EmoError as exc:
        fail(str(exc))
    ok = ", ".join(f"{m} {n}" for m, n in summary.ok.items())
    Console().print(f"[green]merged[/] {len(shards)} shards -> {out}: {summary.clips} clips; ok: {ok}")
# </cache-section>


# ---- extract (emo/extract) ----------------------------------------------------------
# <extract-section>
# </extract-section>


# ---- fit / eval / sweep / runs / heads (emo/fusion) --------------------------------------
# <fusion-section>
# </fusion-section>


# ---- predict / demo (emo/predict.py, emo/demo.py) ----------------------------------
# <predict-section>
# </predict-section>


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
