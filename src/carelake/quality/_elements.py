"""FHIR element rules read from the R4 model of ``fhir.resources`` instead of being typed in by hand.

For each resource type: its elements (top level, and inside single-valued complex elements one level down),
whether each is required, repeats, which primitive type it has, its required value set and the resource
types a reference may point to. ``fhir.resources`` ships R4B (4.3), which for the resources carelake reads
has the same elements, cardinalities and required bindings as R4 (4.0.1).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache

from carelake.fhir._model import type_name

# JSON members that are not elements to check: narrative, extensions, contained resources.
_SKIP = {"fhir_comments", "extension", "modifierExtension", "contained", "text"}
# Complex types whose single-valued members are checked one level down (period.start, subject.reference, …).
_DESCEND = {"Period", "Quantity", "Reference", "Coding", "Identifier", "Meta", "Attachment", "Range", "Age", "Duration"}

NUMBER_TYPES = {"integer", "decimal", "positiveInt", "unsignedInt", "integer64"}


@dataclass(frozen=True)
class Element:
    """One element of a resource type, as the JSON path carelake reads it by."""

    path: str  # JSONPath: $.status, $.period.start
    name: str  # FHIR-style: status, period.start
    type: str  # primitive (dateTime, code, …) or complex (CodeableConcept, Reference, …)
    repeats: bool
    required: bool
    choice: str | None  # the choice group (effective for effectiveDateTime)
    choice_required: bool
    values: tuple[str, ...]  # required binding's codes (complete enumerations only)
    targets: tuple[str, ...]  # reference target types

    @property
    def primitive(self) -> bool:
        return self.type[:1].islower()

    @property
    def json_kind(self) -> str:
        """The JSON kind a single value of this element must have."""
        if not self.primitive:
            return "object"
        if self.type == "boolean":
            return "boolean"
        return "number" if self.type in NUMBER_TYPES else "string"


@cache
def resource_types() -> frozenset[str]:
    from carelake.sources.fhir._r4 import r4_resource_types

    return frozenset(r4_resource_types())


@cache
def elements(resource_type: str) -> tuple[Element, ...]:
    """Every element carelake checks for a resource type; empty for a type the model does not know."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):  # an R4 type R4B dropped: no rules for it
        return ()
    found: list[Element] = []
    for element in _members(model, "$", ""):
        found.append(element)
        if not element.repeats and element.type in _DESCEND:
            found.extend(_members(get_fhir_model_class(element.type), element.path, element.name + "."))
    return tuple(found)


@cache
def json_members(resource_type: str) -> frozenset[str]:
    """The top-level JSON member names R4 allows on a resource type (with ``_x`` primitive extensions)."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):  # an R4 type R4B dropped (EffectEvidenceSynthesis, …): no rules for it
        return frozenset()
    names = {"resourceType"}
    for field in model.model_fields.values():
        names.add(field.alias or "")
    return frozenset(n for n in names if n and n != "fhir_comments")


def _members(model: typing.Any, parent_path: str, parent_name: str) -> list[Element]:
    result = []
    for field in model.model_fields.values():
        extra = field.json_schema_extra or {}
        alias = field.alias or ""
        if not extra.get("element_property") or alias in _SKIP or (parent_name and alias == "id"):
            continue
        type_, repeats = type_name(field.annotation)
        values = tuple(extra.get("enum_values") or ())
        result.append(
            Element(
                path=f"{parent_path}.{alias}",
                name=parent_name + alias,
                type=type_,
                repeats=repeats,
                required=bool(extra.get("element_required")) or field.is_required(),
                choice=extra.get("one_of_many"),
                choice_required=bool(extra.get("one_of_many_required")),
                values=() if "+" in values else values,  # "+" marks a hierarchy fhir.resources does not list
                targets=tuple(t for t in extra.get("enum_reference_types") or () if t != "Resource"),
            )
        )
    return result
