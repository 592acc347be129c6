"""Feature columns in plain language, for a care team reading why a patient is on a worklist.

The names follow the feature definition (``default.yaml``): counts are ``<name>_<window>d`` or ``<name>_all``,
condition flags are their name, labs and vitals are ``<name>_last|min|max|mean``. Describing them here keeps
that naming in one module with the SQL that makes it.
"""

from __future__ import annotations

import re
from typing import Any

_COUNT = re.compile(r"^(?P<name>[a-z_]+?)_(?:(?P<days>\d+)d|all)$")
_STATISTIC = {"last": "latest", "min": "lowest", "max": "highest", "mean": "average"}
_LABELS = {
    "hba1c": ("HbA1c", "%"),
    "fasting_glucose": ("fasting glucose", "mg/dL"),
    "bmi": ("BMI", ""),
    "weight": ("weight", "kg"),
    "systolic_bp": ("systolic blood pressure", "mmHg"),
    "diastolic_bp": ("diastolic blood pressure", "mmHg"),
    "heart_rate": ("heart rate", "/min"),
    "creatinine": ("creatinine", "mg/dL"),
    "egfr": ("eGFR", "mL/min/1.73m²"),
    "ldl": ("LDL cholesterol", "mg/dL"),
    "hdl": ("HDL cholesterol", "mg/dL"),
    "triglycerides": ("triglycerides", "mg/dL"),
    "ed_visits": ("emergency department visits", ""),
    "copd": ("COPD", ""),
    "physical_activity": ("physical activity", "min/week"),
    "distinct_medications": ("different medications", ""),
    "family_history_diabetes": ("diabetes in the family", ""),
}
# HL7 discharge-disposition codes, as a care team says them.
_DISPOSITIONS = {
    "home": "discharged home",
    "alt-home": "discharged to an alternative home (e.g. a relative's)",
    "snf": "discharged to a skilled nursing facility",
    "rehab": "discharged to rehabilitation",
    "other-hcf": "discharged to another healthcare facility",
    "hosp": "transferred to another hospital",
    "long": "discharged to long-term care",
    "aadvice": "left against medical advice",
    "exp": "died in hospital",
    "psy": "discharged to a psychiatric hospital",
    "oth": "other discharge",
    "none": "no discharge recorded",
}
_FIXED = {
    "age": lambda v: f"age {v:.0f}",
    "length_of_stay_days": lambda v: f"{v:.0f}-day hospital stay",
    "charlson_index": lambda v: f"comorbidity (Charlson) index {v:.0f}",
    "emergency_admission": lambda v: "admitted as an emergency" if v else "planned admission",
}


def describe(column: str, value: float | None, spec: dict[str, Any] | None = None) -> str:
    """``column`` at ``value`` as a care team would say it, e.g. ``3 inpatient admissions in the last 365 days``."""
    from carelake.features._build import load_spec

    spec = spec if spec is not None else load_spec()
    if "=" in column:  # a one-hot category: sex=female
        attribute, level = column.split("=", 1)
        if attribute == "discharge_disposition":
            where = _DISPOSITIONS.get(level, f"discharged ({level})")
            return where if value else f"not {where}"
        return f"{attribute}: {level}" if value else f"{attribute} not {level}"
    if value is None or value != value:  # missing (NaN)
        return f"no {_label(column.rsplit('_', 1)[0] if _is_measurement(column, spec) else column)} on record"
    if column in _FIXED:
        return _FIXED[column](value)
    if column in spec.get("flags", {}):
        label = _label(column)
        return f"{label} recorded" if value else f"no {label} recorded"
    if column.endswith("_trend") and column[: -len("_trend")] in spec.get("trends", {}):
        label, unit = _LABELS.get(column[: -len("_trend")], (column[: -len("_trend")].replace("_", " "), ""))
        return f"{label} {'rising' if value > 0 else 'falling'} {abs(value):.2g}{(' ' + unit) if unit else ''} a year"
    if _is_measurement(column, spec):
        name, statistic = column.rsplit("_", 1)
        label, unit = _LABELS.get(name, (name.replace("_", " "), ""))
        return f"{_STATISTIC[statistic]} {label} {value:g}{(' ' + unit) if unit else ''}"
    match = _COUNT.match(column)
    if match and match["name"] in {c["name"] for c in spec.get("counts", [])}:
        label = _label(match["name"])
        label = label[:-1] if value == 1 and label.endswith("s") else label
        when = f"in the last {match['days']} days" if match["days"] else "on record"
        return f"{value:.0f} {label} {when}"
    return f"{column.replace('_', ' ')} {value:g}"


def _is_measurement(column: str, spec: dict[str, Any]) -> bool:
    name, _, statistic = column.rpartition("_")
    return statistic in _STATISTIC and name in spec.get("measurements", {})


def _label(name: str) -> str:
    return _LABELS.get(name, (name.replace("_", " "), ""))[0]


def family(column: str) -> str:
    """The feature a column belongs to: ``weight`` for ``weight_last`` and ``weight_max``, ``ed_visits`` for
    ``ed_visits_30d``; a reason list names each family once."""
    name, _, suffix = column.rpartition("_")
    if name and (suffix in (*_STATISTIC, "trend", "all") or (suffix[:-1].isdigit() and suffix.endswith("d"))):
        return name
    return column.split("=", 1)[0]
