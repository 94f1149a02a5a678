"""``python -m assay``: the ``assay`` command line (see :mod:`assay.cli`)."""

import sys

from .cli import main

sys.exit(main())
