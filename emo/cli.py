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

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# ---- datasets (emo/extract/datasets) -------------------------------------------------
# <datasets-section>
# </datasets-section>


# ---- cache (emo/cache) --------------------------------------------------------------
# <cache-section>
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
