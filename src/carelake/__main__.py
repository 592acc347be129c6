"""``python -m carelake`` is the ``carelake`` command."""

from carelake.cli import main

main()
