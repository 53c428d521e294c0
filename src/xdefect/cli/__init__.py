"""The ``xdefect`` command line: a thin shell over the library.

One module per command group, each registering its parsers beside their handlers; a
handler calls the library functions that do the work (:mod:`xdefect.pipelines`,
:mod:`xdefect.protocol`, :mod:`xdefect.train`...) and prints their results.

Every command reports bad input (a missing path, an unreadable image, malformed ground
truth...) as one line on stderr, ``xdefect: error: FILE: problem``, and exits with
status 2, without a traceback and without leaving half-written outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from xdefect import __version__
from xdefect.cli import (
    adapt,
    dataset,
    demo,
    detect,
    evaluate,
    export,
    gan,
    gdxray,
    models,
    segment,
    simulate,
    train,
)
from xdefect.cli.common import PROG, Formatter, Parser
from xdefect.errors import DataWarning, InputError

__all__ = ["GROUPS", "build_parser", "main"]

#: command groups in the order ``xdefect --help`` lists them
GROUPS = (gdxray, simulate, dataset, models, train, segment, gan, detect, evaluate, export,
          adapt, demo)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    p = Parser(prog=PROG, formatter_class=Formatter, description=(
        "xdefect: automated X-ray inspection of castings.\n\n"
        "Simulate realistic defects, train a patch CNN (Xnet-II) on them, scan whole\n"
        "radiographs and measure how well real defects are found (GDXray Castings).\n\n"
        "Boxes everywhere are (x1, y1, x2, y2) pixels, 0-based, half-open."))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--debug", action="store_true", default=bool(os.environ.get("XDEFECT_DEBUG")),
                   help="show Python tracebacks instead of one-line errors (also: "
                        "XDEFECT_DEBUG=1)")
    # not "command": config dataclasses (BuildArgs, TrainConfig) have a field of that name
    sub = p.add_subparsers(dest="xdefect_command", metavar="COMMAND", parser_class=Parser)
    for g in GROUPS:
        g.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2 for bad input, 130 when interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        if getattr(args, "quiet", False):
            from xdefect.io import set_quiet

            set_quiet(True)
        with warnings.catch_warnings():
            warnings.simplefilter("default", DataWarning)
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`xdefect ... | head -1`): stop quietly, as Unix tools do;
        # point stdout at /dev/null so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # the file system said no: a path the user gave, a full disk...
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        hint = (" (a file stands where a folder is needed)"
                if isinstance(exc, (FileExistsError, NotADirectoryError))
                and exc.filename and not os.path.isdir(exc.filename) else "")
        print(f"{PROG}: error: {where}{exc.strerror or exc}{hint}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: out of memory (try a smaller --batch, --limit-images or "
              "fewer --workers)", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line here, the traceback in a log
        if args.debug:
            raise
        log = _crash_log()
        first = (str(exc).splitlines() or [""])[0][:200]
        print(f"{PROG}: internal error ({exc.__class__.__name__}: {first}); this is a bug, "
              f"please report it with {log} (or rerun with --debug)", file=sys.stderr)
        return 70


def _crash_log() -> str:
    """Write the current exception's traceback to a log file; returns its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="xdefect-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"xdefect {__version__}\nargv: {sys.argv}\n\n")
        traceback.print_exc(file=fh)
    return path


def _show_warning(message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    """A :class:`DataWarning` as one line ``xdefect: warning: ...``; others as Python
    prints them."""
    if issubclass(category, DataWarning):
        print(f"{PROG}: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
