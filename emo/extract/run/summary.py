"""What `emo extract` shows: a progress bar per modality and the closing summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported lazily; these are for annotations only
    from rich.console import Console
    from rich.progress import Progress
    from rich.console import RenderableType

    from emo.extract.run.local import ExtractionSummary

MAX_REASONS_SHOWN = 3


def extraction_progress(console: "Console | None", enabled: bool) -> "Progress":
    """One bar per modality: done/total clips, clips per second, time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class ClipRateColumn(ProgressColumn):
        def render(self, task) -> Text:
            # rich's windowed speed needs a few samples; a modality done in one batch falls back to the mean.
            speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else None)
            return Text(f"{speed:6.1f} clips/s" if speed else "    - clips/s", style="progress.data.speed")

    return Progress(
        TextColumn("[bold]{task.description:<7}"),
        BarColumn(),
        MofNCompleteColumn(),
        ClipRateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
    )


def skipped_line(count: int, reasons: list[str]) -> str:
    """'12 files skipped by the adapter: a.wav: empty; b.wav: ...' (first few reasons)."""
    shown = "; ".join(reasons[:MAX_REASONS_SHOWN])
    more = " ..." if count > MAX_REASONS_SHOWN else ""
    return f"{count} file{'s' if count != 1 else ''} skipped by the dataset adapter: {shown}{more}"


def summary_table(summary: "ExtractionSummary") -> "RenderableType":
    """Counts per modality, then the first few reasons for clips that are missing or failed."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    shard = f", shard {summary.shard[0]}/{summary.shard[1]}" if summary.shard else ""
    if summary.processes > 1:
        shard += f", {summary.processes} processes"
    # Names from the user or the dataset are escaped: `[/]` in a path must print, not parse as markup.
    title = f"{escape(summary.dataset)}: {summary.clips} clips{shard} -> {escape(str(summary.cache_path))}"
    table = Table(title=title, title_justify="left")
    table.add_column("modality", no_wrap=True)
    table.add_column("backbone", overflow="fold")
    table.add_column("cache", no_wrap=True)  # new | kept | rebuilt
    for name in ("extracted", "kept", "missing", "failed", "time"):
        table.add_column(name, justify="right", no_wrap=True)
    for m in summary.modalities:
        table.add_row(
            m.modality,
            escape(m.backbone),
            m.action,
            str(m.extracted),
            str(m.kept),
            str(m.missing),
            f"[red]{m.failed}[/]" if m.failed else "0",
            f"{m.seconds:.1f}s",
        )
    parts: list = [table]
    if summary.table is not None and summary.table.any:
        parts.append(Text(summary.table.describe(), style="bold"))
        parts.extend(Text(f"  {line}") for line in summary.table.examples[:MAX_REASONS_SHOWN])
    for m in summary.modalities:
        if m.retried:
            parts.append(Text(f"{m.modality}: retried {m.retried} previously failed clip{'s' if m.retried != 1 else ''}"))
    for m in summary.modalities:
        if m.reasons:
            parts.append(Text(f"{m.modality}: first of {m.missing + m.failed} missing/failed clips:", style="bold"))
            parts.extend(Text(f"  {reason}") for reason in m.reasons[:MAX_REASONS_SHOWN])
    return Group(*parts)
