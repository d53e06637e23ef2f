"""``python -m beatsync`` runs the ``beatsync`` command."""

from beatsync.cli import run

run()
