"""Privacy: de-identification as a stage, leak verification, re-identification risk, small-cell rules.

    >>> import carelake.privacy as privacy
    >>> privacy.keygen("deid.key")                                            # doctest: +SKIP
    >>> privacy.deidentify("lake", "lake-deid", key_file="deid.key").reconciles  # doctest: +SKIP
    True
    >>> privacy.verify("lake-deid", cl.open_lake("lake")).passed              # doctest: +SKIP
    True

See docs/privacy.md for the policies, what each rule does, their limits and measured accuracy. Names load
lazily: reports need only the small-cell rule, not the text scrubber's NLP stack.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "SMALL_CELL": "carelake.privacy._cells",
    "suppressed": "carelake.privacy._cells",
    "DeidKey": "carelake.privacy._keys",
    "keygen": "carelake.privacy._keys",
    "known_identifiers": "carelake.privacy._known",
    "Policy": "carelake.privacy._policy",
    "QUASI_IDENTIFIERS": "carelake.privacy._risk",
    "achieve_k": "carelake.privacy._risk",
    "reidentification_risk": "carelake.privacy._risk",
    "DeidSummary": "carelake.privacy._run",
    "deidentify": "carelake.privacy._run",
    "Known": "carelake.privacy._text",
    "TextScrubber": "carelake.privacy._text",
    "VerifyResult": "carelake.privacy._verify",
    "verify": "carelake.privacy._verify",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'carelake.privacy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
