"""The one error a ViewDefinition raises: it names the offending element, like ``select[1].column[0].path``."""

from __future__ import annotations

from carelake.errors import ConfigError


class ViewDefinitionError(ConfigError):
    """A ViewDefinition is invalid, or its FHIRPath cannot be compiled or evaluated.

    ``element`` is the location in the view (``select[0].forEach``, ``where[1].path``) when known.
    """

    def __init__(self, message: str, *, element: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{element}: {message}" if element else message, hint=hint)
        self.element = element
