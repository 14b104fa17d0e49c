"""The one error boundary of the `emo` command: no command ever ends in a Python traceback.

* EmoError (bad input or state the user can fix): `error: <message>`, exit 1 (under torchrun,
  printed by rank 0 alone).
* Any other exception (a bug, or a library failing in a way emo did not foresee):
  `error: <Type>: <first line>` and a hint to rerun with EMO_DEBUG=1 (or `emo --debug ...`),
  which lets the exception through with its full traceback. Exit 1.
* Ctrl-C: `interrupted`, exit 130 (resumable writers keep what finished).

Every command runs inside `EmoGroup.invoke`, so commands do not catch EmoError themselves.
Messages go through `rich.markup.escape`: file names and clip ids like `a[/]b` print as given.
Import-light (typer/click/rich only): `emo --help` stays instant.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

try:  # typer >= 0.23 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on the real click
    from click import ClickException

# Exits and usage errors print themselves (typer.Exit, typer.Abort are not ClickExceptions in typer's copy).
_PASS_THROUGH = (typer.Exit, typer.Abort, ClickException)

DEBUG_ENV = "EMO_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def print_error(message: str) -> None:
    """`error: <message>` on stderr, the message printed verbatim (never parsed as rich markup)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def _main_process() -> bool:
    """False on torchrun ranks other than 0 (`emo extract` under torchrun): rank 0 reports every
    rank's error (emo/extract/run/distributed.py), so the others stay silent and exit 1."""
    from emo.extract.run.distributed import is_main_process

    return is_main_process()


class EmoGroup(TyperGroup):
    """The `emo` command group: every subcommand's exceptions end here as one line."""

    def invoke(self, ctx: typer.Context):
        from emo.errors import EmoError, describe

        debug = bool(ctx.params.get("debug")) or debug_enabled()
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except EmoError as exc:
            if debug:
                raise
            if _main_process():
                print_error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # the boundary: anything unforeseen is one line plus how to see more
            if debug:
                raise
            print_error(f"{describe(exc)} (an unexpected error; rerun with {DEBUG_ENV}=1 or `emo --debug ...` for the traceback)")
            raise typer.Exit(1) from None
