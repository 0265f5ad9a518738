"""The `depthkit` command line: parses options and calls library code, nothing else.

User mistakes (DepthkitError) are printed as one line without a traceback, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path  # noqa: F401  (used by the command blocks below)
from typing import Annotated  # noqa: F401

import typer

from depthkit.errors import DepthkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train mask + depth models on large composite image sets, fast.",
)

# Each block below belongs to one command; edit only inside your block.

# --- synth ---
# --- end synth ---

# --- shard ---
# --- end shard ---

# --- verify ---
# --- end verify ---

# --- train ---
# --- end train ---

# --- eval ---
# --- end eval ---

# --- predict ---
# --- end predict ---

# --- demo ---
# --- end demo ---


def main() -> None:
    """Entry point of the `depthkit` console script."""
    try:
        app()
    except DepthkitError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
