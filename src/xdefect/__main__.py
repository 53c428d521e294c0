"""``python -m xdefect`` is the ``xdefect`` command."""

import sys

from xdefect.cli import main

sys.exit(main())
