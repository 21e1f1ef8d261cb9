"""``python -m promod``: the same as the ``promod`` command."""

import sys

from promod.cli import main

sys.exit(main())
