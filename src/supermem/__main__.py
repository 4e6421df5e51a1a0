"""``python -m supermem`` is the ``supermem`` command."""

import sys

from supermem.cli import main

sys.exit(main())
