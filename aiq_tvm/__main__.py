"""``python -m aiq_tvm`` runs the ``aiq-tvm`` command line."""

from .cli import run

run()
