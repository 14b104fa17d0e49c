"""Terminal output of fits: one line per epoch under a rich progress bar, and result tables.

`QuietDisplay` has the same methods and prints nothing (tests, sweeps).
"""

from __future__ import annotations

from typing import Sequence

from emo.fusion.metrics import HEADLINE

HEADLINE_TITLES = {"accuracy": "acc", "weighted_f1": "wF1", "macro_f1": "mF1", "uar": "UAR"}


class QuietDisplay:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def note(self, text: str) -> None:
        pass

    def fold(self, index: int, n_folds: int, sizes: dict, epochs: int) -> None:
        pass

    def epoch(self, record: dict) -> None:
        pass


class EpochDisplay(QuietDisplay):
    """Epoch lines printed above a live progress bar (on stderr, so stdout stays for results)."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False)
        self.progress = None
        self.task = None
        self.fold_label = ""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=True,
        )
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def note(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]·[/] {escape(text)}")  # notes name classes and columns: user strings

    def fold(self, index: int, n_folds: int, sizes: dict, epochs: int) -> None:
        self.fold_label = f"fold {index + 1}/{n_folds} " if n_folds > 1 else ""
        split = ", ".join(f"{k} {v}" for k, v in sizes.items())
        self.console.print(f"[bold]{self.fold_label or 'fit '}[/]({split})")
        self.console.print(f"[dim]{'epoch':>7} {'train loss':>11} {'val loss':>9} {'val wF1':>8} {'lr':>9} {'s':>6}[/]")
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"{self.fold_label}epochs", total=epochs)

    def epoch(self, record: dict) -> None:
        val_loss = f"{record['val_loss']:9.4f}" if "val_loss" in record else f"{'-':>9}"
        val_f1 = f"{record['val_weighted_f1']:8.4f}" if "val_weighted_f1" in record else f"{'-':>8}"
        lr = f"{record['lr']:9.2e}" if "lr" in record else f"{'-':>9}"  # no lr: a scikit-learn fit
        self.console.print(
            f"{record['epoch']:>7} {record['train_loss']:11.4f} {val_loss} {val_f1} {lr} {record['seconds']:6.2f}"
        )
        if self.task is not None:
            self.progress.update(self.task, advance=1)


def format_metric(metrics: dict, key: str, digits: int = 4) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    std = metrics.get(f"{key}_std")
    return f"{value:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{value:.{digits}f}"


def metrics_table(metrics: dict, title: str = ""):
    """A title line, the headline metrics, then per-class precision/recall/F1/support."""
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False)
    table.add_column("class")
    for column in ("precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    for name, row in metrics.get("per_class", {}).items():
        table.add_row(Text(str(name)), f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    headline = Table(show_header=False, show_edge=False, box=None)
    for key in HEADLINE:
        headline.add_row(HEADLINE_TITLES[key], format_metric(metrics, key))
    from rich.console import Group

    return Group(Text(title, style="bold"), headline, table) if title else Group(headline, table)


def runs_table(rows: Sequence[dict], columns: Sequence[str], title: str = ""):
    """A table of run summaries (emo runs, emo sweep): metric columns right-aligned."""
    from rich.table import Table
    from rich.text import Text

    # Text cells: run names, paths and modality lists are user strings, never rich markup.
    table = Table(title=Text(title) if title else None)
    # Means only, so the table fits a terminal; k-fold spread shows as one "UAR ±" column.
    with_std = any("uar_std" in row for row in rows)
    for column in columns:
        if column in HEADLINE:
            table.add_column(HEADLINE_TITLES[column], justify="right", no_wrap=True)
        else:
            table.add_column(column, overflow="fold", min_width=min(len(column), 6))
    if with_std:
        table.add_column("UAR ±", justify="right", no_wrap=True)
    for row in rows:
        cells = [Text(f"{row[c]:.3f}") if c in HEADLINE and c in row else Text(str(row.get(c, ""))) for c in columns]
        if with_std:
            cells.append(Text(f"{row['uar_std']:.3f}" if "uar_std" in row else ""))
        table.add_row(*cells)
    return table
