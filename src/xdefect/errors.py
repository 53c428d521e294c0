"""Errors that the command line reports as one line and exit status 2."""

from __future__ import annotations

__all__ = ["DataWarning", "InputError"]


class InputError(Exception):
    """Bad user input: a missing path, an unreadable image, malformed ground truth...

    The message is one line that names the offending file (and line where there is one)
    and the problem. :mod:`xdefect.cli` prints it to stderr and exits with status 2,
    without a traceback.
    """


class DataWarning(UserWarning):
    """Input that xdefect read after correcting it, as GDXray ships some of it: a box one
    pixel past the image edge clipped, a duplicate ground-truth row counted once.

    The message is one line naming the file and what was done; the command line prints it
    as ``xdefect: warning: ...`` once per run.
    """
