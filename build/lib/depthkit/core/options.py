"""Config fields that carry their command-line help, so each option is written down once.

`depthkit.cli_options` turns such fields into Typer options; the metadata keys it reads
("help", "cli_name", "cli_type", "cli_default", "flags", "parse", "options") are listed there.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any


def option(default: Any = MISSING, help: str = "", **cli: Any) -> Any:
    """A dataclass field with a default (none: required) and its command-line help."""
    return field(default=default, metadata={"help": help, **cli})
