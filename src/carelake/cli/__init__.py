"""The ``carelake`` command line: thin commands over the Python API, one error handler."""

from carelake.cli._app import app, main

__all__ = ["app", "main"]
