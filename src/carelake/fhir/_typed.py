"""Typed reading: a view's resources parsed once into SQL structs shaped by the FHIR R4 model.

The general form of a compiled view keeps every element as JSON text and asks the engine to parse it again
at each step down a path (``code`` → ``coding`` → ``system``), several times per resource and column. Where
the view only navigates, filters and picks elements, the compiler instead parses each resource once (DuckDB's
``json_transform``, Spark's ``from_json``: the ``cl_fp_typed`` function) into a struct holding exactly the
members the view reads. Objects become structs, arrays of objects lists of structs, a string-like primitive
read once SQL text (a ``text`` leaf, as hand-written SQL reads it), and any other primitive stays a JSON value,
so conversions and comparisons give what the general form gives. Struct access is then nearly free, as in
hand-written SQL over FHIR.

A :class:`Shape` is that struct being built: the compiler asks it for each member it reads, and it answers
from the model (``carelake.fhir._model``). Members the model does not type (a choice element's bare name, a
member R4 lacks, a contained resource) are kept as JSON, so reading them is exactly the general form.

The struct only holds what the model's shapes allow, so a resource that breaks them (an object where the
model has a list, a list where it has an object) could be read differently. Such resources are recognised
by their text (:meth:`Shape.fits_sql`) and read the general way instead, in the same query. Three misfits
are not caught, all invalid FHIR JSON: an item of a list of objects that is not an object (the typed
reader skips it, as both skip a JSON null); a primitive where the model has an object, under a name that is
a primitive elsewhere in the resource (read as absent); an object where the model has a string, under a
name that is an object elsewhere (read as a string holding the object's JSON, as a string column shows the
object anyway; a type test differs).

On Spark, ``cl_fp_fits`` is false, so every resource is read the general way and the typed form folds
away. With both forms, Spark's code generator gave up on more of the query (a method may hold 64 KB), and
the eleven standard views took 58 s at 1,000 patients against 35 s for the general form alone; one such run
stalled for ten minutes.

Anything the compiler cannot express over structs (comparing or printing a whole object, ``repeat``,
``distinct``…) raises :class:`Untyped`, and the whole view is compiled the general way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from carelake.fhir._model import STRING_TYPES, TEMPORAL_TYPES, members


class Untyped(Exception):
    """The view needs JSON elements somewhere a typed struct would arrive."""


@dataclass(frozen=True)
class Leaf:
    """A primitive member, read one of four ways (the misfit pattern flags what each cannot hold):

    * ``text``: a string-like primitive (``code``, ``dateTime``…) the model allows once, under a name no number
      or boolean has in the resource type: read as SQL text, the string's value, as the hand-written SQL does
      (an array, a number or a boolean is flagged; an object too, unless the name holds an object elsewhere);
    * ``one``: another primitive the model allows once, kept as JSON; one element, or none (an array is flagged);
    * ``absent``: a name no element of the resource type has (a choice element's bare name, ``effective``);
      read as empty (the name is flagged wherever it appears);
    * ``any``: anything else, kept as JSON and read as ``cl_fp_get`` reads it.
    """

    kind: str


@dataclass(eq=False)
class Shape:
    """The members a view reads below one typed element of a FHIR type (a resource or complex datatype)."""

    type: str
    resource: str
    repeats: bool = False
    members: dict[str, Shape | Leaf] = field(default_factory=dict)

    @staticmethod
    def root(resource_type: str) -> Shape:
        if not members(resource_type):
            raise Untyped(f"no model for {resource_type}")
        return Shape(resource_type, resource_type)

    def read(self, name: str) -> Shape | Leaf:
        """How member ``name`` is read, recorded in the struct."""
        if name not in self.members:
            member = members(self.type).get(name)
            if member is not None and not member.primitive and members(member.type):
                self.members[name] = Shape(member.type, self.resource, member.repeats)
            elif member is None:
                self.members[name] = Leaf("any" if name in _names(self.resource).every else "absent")
            else:
                names = _names(self.resource)
                once = member.primitive and not member.repeats
                one = once and name not in names.lists
                text = once and member.type in _TEXT_TYPES and name not in names.not_text
                self.members[name] = Leaf("text" if text else "one" if one else "any")
        return self.members[name]

    def structure(self) -> str:
        """The ``json_transform`` structure of everything read below this element."""
        return json.dumps(self._structure(), separators=(",", ":"))

    def _structure(self) -> dict[str, object]:
        result: dict[str, object] = {}
        for name, shape in self.members.items():
            if isinstance(shape, Leaf):
                if shape.kind != "absent":
                    result[name] = "VARCHAR" if shape.kind == "text" else "JSON"
            else:
                result[name] = [shape._structure()] if shape.repeats else shape._structure()
        return result or {"id": "JSON"}  # a struct needs a field: every element may have an id

    def _typed_members(self) -> dict[str, set[str]]:
        """Member name -> how the struct reads it: "list" or "object" (typed), or a leaf's kind but "any"."""
        found: dict[str, set[str]] = {}
        for name, shape in self.members.items():
            if isinstance(shape, Leaf):
                if shape.kind != "any":
                    found.setdefault(name, set()).add(shape.kind)
                continue
            found.setdefault(name, set()).add("list" if shape.repeats else "object")
            for inner, kinds in shape._typed_members().items():
                found.setdefault(inner, set()).update(kinds)
        return found

    def misfit_pattern(self) -> str:
        """A regular expression found in every resource text the struct could read differently.

        - A typed list must hold a JSON array (or null), a typed object a JSON object (or null), a primitive
          leaf read as one value anything but an array. A name read both as a list and as an object is
          flagged whatever it holds.
        - Names recur at other depths with other kinds, so the pattern also flags resources that fit: those
          are read the general way, correctly, only slower.
        - A key written with an escape hides its name: ``cl_fp_fits`` leaves every text with a ``\\u``
          escape to the general form, with a test cheaper than a pattern for it.
        - A text leaf must hold a string: a number or a boolean is flagged, and an object where no element of
          the resource type has an object under that name.
        - Two misfits cannot be told from a fit by the text: a string, number or boolean under a name that is
          a primitive elsewhere in the resource (``code`` is an object in Observation, a string in its
          codings), which the typed reader reads as absent; and an object under a text leaf's name that is
          an object elsewhere, which it reads as a string holding the object's JSON.
        """
        names = _names(self.resource)
        by_value: dict[str, list[str]] = {}  # what follows the colon -> the names it flags there
        for name, kinds in sorted(self._typed_members().items()):
            if "absent" in kinds:
                by_value.setdefault("", []).append(name)
                continue
            wrong = {"{"} if "list" in kinds else set()
            if kinds & {"object", "one", "text"}:
                wrong.add(r"\[")
            if not kinds & {"one", "text"} and name not in names.primitive:
                wrong |= {'"', r"\d", r"\-", "t", "f"}
            if "text" in kinds:  # anything but a string (an object only where no object has the name)
                wrong |= {r"\d", r"\-", "t", "f"} | (set() if name in names.complex else {"{"})
            by_value.setdefault(f"\\s*[{''.join(sorted(wrong))}]", []).append(name)
        # One alternative per value class, the names grouped: RE2 scans the text a little faster.
        return "|".join(
            f'"({"|".join(re.escape(n) for n in flagged)})"\\s*:{value}' for value, flagged in sorted(by_value.items())
        )

    def fits_sql(self, column: str) -> str:
        """SQL true when the resource text in ``column`` may be read typed (``cl_fp_fits``: no misfit).

        Text that is not JSON passes this test; ``cl_fp_typed`` gives NULL for it, and it is read the general way.
        """
        pattern = self.misfit_pattern().replace("'", "''")
        return f"cl_fp_fits({column}, '{pattern}')"


# FHIR primitives whose JSON form is a string (read as SQL text by a ``text`` leaf).
_TEXT_TYPES = STRING_TYPES | TEMPORAL_TYPES


class _Names(NamedTuple):
    """Member names anywhere in a resource type, by what they hold somewhere."""

    primitive: frozenset[str]  # a primitive (or a type without a model)
    lists: frozenset[str]  # a list
    every: frozenset[str]  # anything
    not_text: frozenset[str]  # a primitive that is not a JSON string (a number or a boolean)
    complex: frozenset[str]  # an object


@cache
def _names(resource_type: str) -> _Names:
    """The member names of a resource type, anywhere in it, by what they hold.

    Extensions are not followed: their values reach every datatype, which would make every name both. Where
    such a name turns up in an extension, the misfit pattern errs on the safe side.
    """
    primitive: set[str] = set()
    lists: set[str] = set()
    every: set[str] = {"resourceType"}
    not_text: set[str] = set()
    complex_: set[str] = set()
    seen: set[str] = set()
    todo = [resource_type]
    while todo:
        type_ = todo.pop()
        if type_ in seen:
            continue
        seen.add(type_)
        for name, member in members(type_).items():
            every.add(name)
            if member.repeats:
                lists.add(name)
            if member.primitive or not members(member.type):
                primitive.add(name)
                if member.type not in _TEXT_TYPES:
                    not_text.add(name)
            else:
                complex_.add(name)
                if member.type != "Extension":
                    todo.append(member.type)
    return _Names(*(frozenset(n) for n in (primitive, lists, every, not_text, complex_)))
