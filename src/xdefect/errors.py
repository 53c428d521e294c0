"""Errors that the command line reports as one line and exit status 2."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Bad user input: a missing path, an unreadable image, malformed ground truth...

    The message is one line that names the offending file (and line where there is one)
    and the problem. :mod:`xdefect.cli` prints it to stderr and exits with status 2,
    without a traceback.
    """
