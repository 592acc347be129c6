"""``python -m carelake`` is the ``carelake`` command."""

from carelake.cli import main

if __name__ == "__main__":  # guarded: worker processes re-import this module
    main()
