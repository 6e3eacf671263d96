"""``python -m aiq_tvm`` runs the ``aiq-tvm`` command line."""

import sys

from .cli import main

sys.exit(main())
