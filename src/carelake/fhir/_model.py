"""The FHIR R4 type of every element, read from the model of ``fhir.resources`` instead of typed in by hand.

Quality checks ask which elements a resource has; de-identification asks, for any JSON member at any depth,
which FHIR datatype it holds. Both read the same model here. ``fhir.resources`` ships R4B (4.3), which for
the resources carelake reads has the same elements and types as R4 (4.0.1).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from functools import cache

# FHIR primitive types by the kind of value they hold (their JSON form: number, string, boolean).
NUMERIC_TYPES = frozenset({"integer", "decimal", "positiveInt", "unsignedInt", "integer64"})
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
TEMPORAL_TYPES = frozenset({"date", "dateTime", "instant", "time"})
STRING_TYPES = frozenset({
    "string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown", "base64Binary", "xhtml",
})  # fmt: skip
PRIMITIVE_TYPES = NUMERIC_TYPES | TEMPORAL_TYPES | STRING_TYPES | {"boolean"}


@dataclass(frozen=True)
class Member:
    """One JSON member of a FHIR type: its datatype (``dateTime``, ``HumanName``, ``PatientContact``…)."""

    type: str
    repeats: bool

    @property
    def primitive(self) -> bool:
        return self.type[:1].islower()


# fhir.resources' markers whose names are not the FHIR primitive's.
_PRIMITIVE_NAMES = {"encodedBytes": "base64Binary", "uuidVersion": "uuid"}


def type_name(annotation: typing.Any) -> tuple[str, bool]:
    """(FHIR type, repeats) of a pydantic field annotation of fhir.resources."""
    repeats = False
    while True:
        args, origin = typing.get_args(annotation), typing.get_origin(annotation)
        if args and type(None) in args:  # Optional[...] and X | None
            annotation = next(a for a in args if a is not type(None))
        elif origin is list:
            repeats = True
            annotation = args[0]
        else:
            break
    if origin is typing.Annotated:
        marker = type(args[1]).__name__
        name = marker[0].lower() + marker[1:]
        return _PRIMITIVE_NAMES.get(name, name), repeats
    if annotation is bool:
        return "boolean", repeats
    name = getattr(annotation, "__name__", str(annotation))
    return re.sub(r"Type$", "", name.split(".")[-1]), repeats


@cache
def model_class(type_: str) -> typing.Any | None:
    """The fhir.resources class of a resource, datatype or backbone element; None for one R4B lacks."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(type_)
    except (KeyError, ValueError):  # an R4 type R4B dropped, or an abstract one (ResourceType)
        return None


@cache
def members(type_: str) -> dict[str, Member]:
    """JSON member name → Member for a resource, datatype or backbone element type (empty when unknown)."""
    model = model_class(type_)
    if model is None:
        return {}
    found: dict[str, Member] = {}
    for field in model.model_fields.values():
        alias = field.alias or ""
        if not alias or alias == "fhir_comments" or alias.endswith("__ext"):
            continue
        found[alias] = Member(*type_name(field.annotation))
    return found
