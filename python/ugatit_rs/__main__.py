"""``python -m ugatit_rs ...``: the same commands as ``ugatit-rs ...``."""

import sys

from .cli import main

sys.exit(main())
