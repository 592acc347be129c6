"""Text a resource must contain for a view's ``where`` to hold: a cheap scan before the JSON parse.

A view restricted to one code (``code.coding.where(system = %loinc and code = '8302-2').exists()``) reads
a small fraction of its resources, but compiled naively it parses every one of them to find out. Parsing
is the cost of a view; a substring test on the stored text is about thirty times cheaper. So when a
``where`` clause can only be true if the resource holds certain string values, the compiled query first
keeps the resources whose text contains them all, and parses only those.

Soundness: an equality between a string and an element read straight from the resource (members,
``where``, ``first``, ``ofType``… never a computed value such as ``lower()``) holds only when the element's
text is that string, and a JSON text holds a string verbatim unless it escapes a character — which takes a
backslash. Resources whose text has a backslash are therefore always kept, whatever they contain. Only
``and``, ``or``, ``=`` and ``exists`` are looked through; any other shape requires nothing, so no filter is
added. A requirement is a set of alternatives, strings of which the text must hold at least one: ``and``
gathers its sides' requirements, ``or`` keeps, for each pair of them, the union of the two (``code = 'a' or
code = 'b'`` requires ``a`` or ``b``), and requires nothing when a side requires nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from carelake.fhir._expressions import sql_string
from carelake.fhir._fhirpath import Binary, Call, Constant, Indexer, Literal, Member, Node, Variable

# FHIRPath functions that return elements of their input unchanged (a subset of it).
_NAVIGATING = {"where", "first", "last", "single", "tail", "skip", "take", "ofType", "extension", "children"}


Required = set[frozenset[str]]  # the text holds, for each set, at least one of its strings


def required_text(tree: Node, strings: Mapping[str, str]) -> Required:
    """What the resource text must contain for ``tree`` (a boolean FHIRPath) to be true.

    ``strings`` are the view's string-typed constants by name. The empty set means no requirement.
    """
    if isinstance(tree, Binary) and tree.op == "and":
        return required_text(tree.left, strings) | required_text(tree.right, strings)
    if isinstance(tree, Binary) and tree.op == "or":
        left, right = required_text(tree.left, strings), required_text(tree.right, strings)
        return {a | b for a in left for b in right}  # empty when either side requires nothing
    if isinstance(tree, Binary) and tree.op == "=":
        for value, other in ((tree.left, tree.right), (tree.right, tree.left)):
            text = _string(value, strings)
            if text and _reads_resource(other):
                return {frozenset({text})}
        return set()
    if isinstance(tree, Call) and tree.name == "exists" and _reads_resource(tree.target):
        if tree.args:
            return required_text(tree.args[0], strings)
        target = tree.target
        if isinstance(target, Call) and target.name == "where" and target.args:
            return required_text(target.args[0], strings)
    return set()


def _string(node: Node, strings: Mapping[str, str]) -> str | None:
    if isinstance(node, Literal) and node.type == "string" and isinstance(node.value, str):
        return node.value
    if isinstance(node, Constant):
        return strings.get(node.name)
    return None


def _reads_resource(node: Node | None) -> bool:
    """Is ``node`` a path into the focus whose values are elements as written (not computed)?"""
    if node is None:
        return True
    if isinstance(node, Member):
        return _reads_resource(node.target)
    if isinstance(node, Indexer):
        return _reads_resource(node.target)
    if isinstance(node, Call):
        return node.name in _NAVIGATING and _reads_resource(node.target)
    return isinstance(node, Variable) and node.name == "this"


def text_filter(column: str, required: Required) -> str | None:
    """SQL keeping the rows whose ``column`` meets every requirement (or has an escape)."""
    if not required:
        return None

    def any_of(texts: frozenset[str]) -> str:
        tests = [f"contains({column}, {sql_string(text)})" for text in sorted(texts)]
        return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"

    tests = " AND ".join(sorted(any_of(texts) for texts in required))
    return f"(({tests}) OR contains({column}, '\\'))"
