"""User-facing errors: the CLI prints these as one line (no traceback) and exits non-zero."""


class DepthkitError(Exception):
    """A user mistake or bad input (missing/corrupt/mismatched file, bad option).

    The message must name the file or option at fault and fit on one line.
    """
