"""The generator's epidemiology and its two causal models, as plain numbers and pure functions.

Everything a downstream model could learn from the synthetic data is decided here, so this module is the
ground truth's specification: ``docs/synthetic-data.md`` prints the same coefficients and names the sources of
the rates. Change a number here and change the document with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import exp, log

# Age bands used by the rate tables: under 18, 18-44, 45-64, 65-74, 75 and over.
_BAND_EDGES = (18.0, 45.0, 65.0, 75.0)


def age_band(age: float) -> int:
    if age < 45.0:
        return 0 if age < 18.0 else 1
    return 2 if age < 65.0 else 3 if age < 75.0 else 4


def logistic(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


# Share with the diagnosed condition when a patient enters the record, by age band (see docs for sources).
PREVALENCE: dict[str, tuple[float, float, float, float, float]] = {
    "htn": (0.01, 0.10, 0.36, 0.58, 0.68),
    "t2d": (0.002, 0.03, 0.13, 0.21, 0.22),
    "hld": (0.0, 0.07, 0.28, 0.42, 0.42),
    "ckd3": (0.0, 0.01, 0.04, 0.11, 0.20),
    "copd": (0.0, 0.015, 0.06, 0.10, 0.12),
    "asthma": (0.07, 0.08, 0.08, 0.07, 0.07),
    "hf": (0.0, 0.003, 0.015, 0.05, 0.10),
    "cad": (0.0, 0.01, 0.06, 0.14, 0.20),
    "mi": (0.0, 0.003, 0.025, 0.06, 0.09),
    "afib": (0.0, 0.002, 0.015, 0.06, 0.10),
    "stroke": (0.0, 0.005, 0.02, 0.05, 0.09),
    "dementia": (0.0, 0.0, 0.005, 0.03, 0.12),
    "depression": (0.03, 0.10, 0.09, 0.07, 0.07),
    "cancer": (0.001, 0.005, 0.03, 0.07, 0.10),
}
# New diagnoses per person-year, by age band (type 2 diabetes has its own causal model below).
INCIDENCE: dict[str, tuple[float, float, float, float, float]] = {
    "htn": (0.0005, 0.012, 0.030, 0.045, 0.050),
    "hld": (0.0, 0.006, 0.020, 0.025, 0.020),
    "ckd3": (0.0, 0.0005, 0.004, 0.012, 0.025),
    "copd": (0.0, 0.0005, 0.003, 0.006, 0.008),
    "asthma": (0.004, 0.002, 0.0015, 0.001, 0.001),
    "hf": (0.0, 0.0003, 0.002, 0.008, 0.020),
    "cad": (0.0, 0.0005, 0.005, 0.012, 0.018),
    "mi": (0.0, 0.0003, 0.002, 0.005, 0.008),
    "afib": (0.0, 0.0003, 0.002, 0.008, 0.018),
    "stroke": (0.0, 0.0003, 0.0015, 0.005, 0.012),
    "dementia": (0.0, 0.0, 0.0005, 0.004, 0.025),
    "depression": (0.003, 0.008, 0.006, 0.005, 0.005),
    "cancer": (0.0002, 0.001, 0.005, 0.012, 0.018),
}
CKD_PROGRESSION = 0.04  # stage 3 -> stage 4 per year

# Charlson-type weights (Charlson et al. 1987 groups; chronic pulmonary disease counted once).
CHARLSON_WEIGHTS = {
    "mi": 1,
    "hf": 1,
    "stroke": 1,
    "dementia": 1,
    "copd": 1,
    "asthma": 1,
    "t2d": 1,
    "ckd3": 2,
    "ckd4": 2,
    "cancer": 2,
}


def charlson(conditions: dict[str, int] | set[str] | frozenset[str]) -> int:
    """Comorbidity burden: the sum of group weights, each group counted once."""
    score = 0
    for key in ("mi", "hf", "stroke", "dementia", "t2d", "cancer"):
        if key in conditions:
            score += CHARLSON_WEIGHTS[key]
    if "copd" in conditions or "asthma" in conditions:
        score += 1
    if "ckd3" in conditions or "ckd4" in conditions:
        score += 2
    return score


@dataclass(frozen=True, slots=True)
class RiskFactors:
    """What raises a patient's risk of chronic disease beyond age (used by prevalence and incidence)."""

    bmi: float
    smoking: str
    race: str
    deprivation: float
    conditions: frozenset[str]


def relative_risk(key: str, f: RiskFactors) -> float:
    """Multiplier on the age-band rate; each is normalised so the population average stays near 1."""
    c = f.conditions
    if key == "htn":
        return exp(0.06 * (f.bmi - 28.0)) * (1.3 if "t2d" in c else 1.0) * (1.25 if f.race == "black" else 1.0)
    if key == "hld":
        return exp(0.03 * (f.bmi - 28.0)) * (1.5 if "t2d" in c else 1.0)
    if key == "ckd3":
        return (2.5 if "t2d" in c else 1.0) * (1.8 if "htn" in c else 1.0) / 1.6
    if key == "copd":
        return {"current": 4.0, "some-days": 3.0, "former": 2.0, "never": 0.3}[f.smoking] / 1.3
    if key == "hf":
        return (
            (1.8 if "htn" in c else 1.0)
            * (2.5 if "cad" in c or "mi" in c else 1.0)
            * (1.8 if "t2d" in c else 1.0)
            * (1.8 if "afib" in c else 1.0)
            / 2.0
        )
    if key in ("cad", "mi"):
        smoker = f.smoking in ("current", "some-days")
        return (
            (2.0 if smoker else 1.0)
            * (1.8 if "t2d" in c else 1.0)
            * (1.4 if "htn" in c else 1.0)
            * (1.4 if "hld" in c else 1.0)
            * (2.0 if key == "mi" and "cad" in c else 1.0)
            / 1.9
        )
    if key == "afib":
        return (1.4 if "htn" in c else 1.0) * (1.5 if "hf" in c else 1.0) / 1.2
    if key == "stroke":
        return (
            (2.0 if "afib" in c else 1.0)
            * (1.5 if "htn" in c else 1.0)
            * (1.4 if "t2d" in c else 1.0)
            * (1.5 if f.smoking in ("current", "some-days") else 1.0)
            / 1.5
        )
    if key == "depression":
        return 1.0 + 0.25 * max(f.deprivation, 0.0)
    if key == "cancer":
        return 1.4 if f.smoking in ("current", "some-days") else 0.95
    return 1.0


def yearly_rate(key: str, age: float, factors: RiskFactors, table: dict[str, tuple[float, ...]]) -> float:
    return min(table[key][age_band(age)] * relative_risk(key, factors), 0.95)


def mortality(age: float, burden: int) -> float:
    """Yearly probability of death: Gompertz fit to the US life table, raised by comorbidity."""
    return min(exp(-9.9 + 0.085 * age) * exp(0.2 * burden), 0.6)


# ---------------------------------------------------------------- type 2 diabetes


@dataclass(frozen=True, slots=True)
class DiabetesModel:
    """Yearly hazard of a type 2 diabetes diagnosis: ``h = logistic(z)`` with ``z`` the sum below."""

    intercept: float = -6.7
    age: float = 0.035  # per year of age above 50
    bmi: float = 0.09  # per kg/m2 above 27
    family_history: float = 0.65
    hypertension: float = 0.45
    glucose: float = 0.08  # per mg/dL of fasting glucose above 100 (capped at 140)
    glucose_trend: float = 0.35  # per mg/dL/year rise in fasting glucose
    activity: float = -0.35  # per 100 min/week of moderate-to-vigorous activity (capped at 300)
    ethnicity: dict[str, float] = field(
        default_factory=lambda: {
            "white": 0.0,
            "black": 0.5,
            "asian": 0.3,
            "aian": 0.7,
            "nhpi": 0.5,
            "other": 0.2,
            "multiple": 0.2,
            "hispanic": 0.45,
        }
    )

    def logit(
        self,
        *,
        age: float,
        bmi: float,
        family_history: bool,
        hypertension: bool,
        glucose: float,
        glucose_trend: float,
        activity: float,
        group: str,
    ) -> float:
        return (
            self.intercept
            + self.age * (age - 50.0)
            + self.bmi * (bmi - 27.0)
            + self.family_history * family_history
            + self.hypertension * hypertension
            + self.glucose * (min(glucose, 140.0) - 100.0)
            + self.glucose_trend * glucose_trend
            + self.activity * min(activity, 300.0) / 100.0
            + self.ethnicity.get(group, 0.0)
        )


DIABETES = DiabetesModel()


def diabetes_group(race: str, ethnicity: str) -> str:
    """The ethnicity term's key: Hispanic origin first, then race."""
    return "hispanic" if ethnicity == "hispanic" else race


# ---------------------------------------------------------------- 30-day readmission


@dataclass(frozen=True, slots=True)
class ReadmissionModel:
    """Probability of an unplanned readmission within 30 days of a discharge: ``p = logistic(z)``."""

    intercept: float = -3.75
    age: float = 0.19  # per decade above 65
    charlson: float = 0.26  # per point (capped at 10)
    prior_admissions: float = 0.13  # per admission in the 12 months before this one (capped at 4)
    ed_visits: float = 0.09  # per ED visit in the 6 months before admission (capped at 4)
    length_of_stay: float = 0.43  # per unit of ln(days)
    polypharmacy: float = 0.55  # five or more active medications at discharge
    housing: float = 0.85
    food: float = 0.55
    transport: float = 0.65
    disposition: dict[str, float] = field(
        default_factory=lambda: {
            "home": 0.0,
            "alt-home": 0.30,
            "snf": 0.55,
            "rehab": 0.34,
            "hosp": 0.0,
            "aadvice": 0.85,
            "exp": 0.0,
        }
    )

    def logit(
        self,
        *,
        age: float,
        charlson: int,
        prior_admissions: int,
        ed_visits: int,
        length_of_stay: int,
        disposition: str,
        active_medications: int,
        housing: bool,
        food: bool,
        transport: bool,
    ) -> float:
        return (
            self.intercept
            + self.age * (age - 65.0) / 10.0
            + self.charlson * min(charlson, 10)
            + self.prior_admissions * min(prior_admissions, 4)
            + self.ed_visits * min(ed_visits, 4)
            + self.length_of_stay * log(max(length_of_stay, 1))
            + self.disposition[disposition]
            + self.polypharmacy * (active_medications >= 5)
            + self.housing * housing
            + self.food * food
            + self.transport * transport
        )


READMISSION = ReadmissionModel()
