"""The JSON report of a checking tool (tools/*.py): printed, and written atomically if asked."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from depthkit.core.atomic import write_atomic
from depthkit.core.errors import DepthkitError


def emit_report(run: Callable[[argparse.Namespace], dict[str, Any]],
                args: argparse.Namespace) -> int:
    """Exit code of `run(args)`: its report as JSON on stdout (and in `args.json` if set), or
    a DepthkitError as one line on stderr and exit code 2."""
    try:
        report = run(args)
    except DepthkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    path: Path | None = args.json
    if path:
        write_atomic(path, (text + "\n").encode(), fsync=False, parents=True)
    return 0
