"""A patient's physiology: latent traits that drift with age, and the measurements a visit would record.

Distributions follow NHANES (adult height, BMI, fasting glucose, HbA1c, lipids) and CDC growth charts
(children); see ``docs/synthetic-data.md``. Measurements are consistent with diagnoses by construction:
pre-diagnosis glycaemia stays below the diabetes thresholds, LDL is derived from total cholesterol, HDL and
triglycerides (Friedewald), and eGFR is computed from the reported creatinine with the CKD-EPI 2021 equation.
"""

from __future__ import annotations

from bisect import bisect_right
from math import exp

from carelake.synth._draws import Draws

# CDC growth chart 50th percentile height (cm) by age, both sexes until puberty.
_GROWTH_AGES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0)
_GROWTH_MALE = (50.0, 67.0, 75.0, 87.0, 95.0, 102.0, 109.0, 115.0, 127.0, 138.0, 149.0, 164.0, 173.0, 176.0)
_GROWTH_FEMALE = (49.0, 66.0, 74.0, 86.0, 94.0, 101.0, 108.0, 115.0, 127.0, 138.0, 151.0, 160.0, 162.0, 163.0)
# Child BMI (kg/m2) 50th percentile by age.
_CHILD_BMI_AGES = (2.0, 5.0, 8.0, 10.0, 12.0, 15.0, 18.0)
_CHILD_BMI = (16.5, 15.5, 16.0, 17.0, 18.5, 20.5, 22.5)
_ADULT_HEIGHT = {"male": (175.4, 7.6), "female": (161.7, 7.1)}
_HEIGHT_SHIFT = {"asian": -5.0, "hispanic": -4.0}


def _interpolate(xs: tuple[float, ...], ys: tuple[float, ...], x: float) -> float:
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def ckd_epi_2021(creatinine: float, age: float, female: bool) -> float:
    """eGFR (mL/min/1.73 m2) from serum creatinine (mg/dL), the race-free CKD-EPI 2021 equation."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine / kappa
    value = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return value * 1.012 if female else value


def creatinine_for(egfr: float, age: float, female: bool) -> float:
    """The serum creatinine at which CKD-EPI 2021 gives ``egfr`` (the equation inverted piecewise)."""
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    c = egfr / (142.0 * 0.9938**age * (1.012 if female else 1.0))
    ratio = c ** (1.0 / alpha) if c >= 1.0 else c ** (-1.0 / 1.200)
    return kappa * ratio


class Body:
    """Latent traits fixed at entry; ``age`` arguments are in years."""

    __slots__ = (
        "a1c_treated",
        "activity",
        "age_ref",
        "bmi_drift",
        "bmi_offset",
        "bmi_ref",
        "ckd3_level",
        "ckd4_level",
        "egfr_offset",
        "female",
        "fpg_ref",
        "fpg_slope",
        "hdl0",
        "height_adult",
        "height_ratio",
        "hr_offset",
        "sbp_offset",
        "tc0",
        "tg0",
    )

    def __init__(
        self, draws: Draws, *, sex: str, race: str, ethnicity: str, age_at_start: float, family_history: bool
    ) -> None:
        self.female = sex == "female"
        mean, sd = _ADULT_HEIGHT[sex]
        shift = _HEIGHT_SHIFT.get("hispanic" if ethnicity == "hispanic" else race, 0.0)
        height_z = draws.z()
        self.height_adult = mean + shift + sd * height_z
        growth = _GROWTH_FEMALE if self.female else _GROWTH_MALE
        self.height_ratio = self.height_adult / growth[-1]
        bmi_z = draws.z()
        self.bmi_offset = 2.5 * bmi_z
        self.age_ref = max(age_at_start, 18.0)
        if age_at_start >= 18.0:
            median = 26.0 + 0.12 * min(age_at_start - 18.0, 30.0)
            self.bmi_ref = min(max(median * exp(0.2 * bmi_z), 16.0), 65.0)
        else:
            self.bmi_ref = _CHILD_BMI[-1] + self.bmi_offset * 1.6
        self.bmi_drift = draws.normal(0.12, 0.10) if self.age_ref < 60 else draws.normal(-0.05, 0.08)
        bmi = self.bmi_ref
        self.fpg_ref = min(
            max(90.0 + 0.25 * (bmi - 27.0) + 0.15 * (self.age_ref - 40.0) + draws.normal(0.0, 7.0), 72.0), 124.0
        )
        self.fpg_slope = min(max(0.25 + 0.12 * (bmi - 27.0) + 0.3 * family_history + draws.normal(0.0, 0.6), -1.0), 4.0)
        inactive = 0.25 + 0.004 * (self.age_ref - 40.0) + 0.01 * (bmi - 27.0)
        self.activity = draws.uniform(0.0, 20.0) if draws.chance(inactive) else min(draws.lognormal(150.0, 0.6), 900.0)
        self.sbp_offset = draws.normal(0.0, 8.0)
        self.hr_offset = draws.normal(0.0, 6.0)
        self.tc0 = draws.normal(175.0, 30.0)
        self.hdl0 = draws.normal(48.0 if not self.female else 59.0, 11.0)
        self.tg0 = draws.lognormal(100.0, 0.4)
        self.egfr_offset = draws.normal(0.0, 10.0)
        self.ckd3_level = draws.uniform(33.0, 57.0)
        self.ckd4_level = draws.uniform(17.0, 28.0)
        self.a1c_treated = draws.normal(7.2, 0.7)

    # ------------------------------------------------------------ latent trajectories (deterministic)

    def height(self, age: float) -> float:
        if age >= 18.0:
            return self.height_adult
        growth = _GROWTH_FEMALE if self.female else _GROWTH_MALE
        return _interpolate(_GROWTH_AGES, growth, age) * self.height_ratio

    def bmi(self, age: float) -> float:
        if age < 18.0:
            return max(_interpolate(_CHILD_BMI_AGES, _CHILD_BMI, age) + self.bmi_offset * age / 18.0, 12.0)
        return min(max(self.bmi_ref + self.bmi_drift * (age - self.age_ref), 15.0), 70.0)

    def fasting_glucose(self, age: float) -> float:
        """Latent fasting plasma glucose (mg/dL) before any diabetes diagnosis."""
        if age < 18.0:
            return 88.0
        return self.fpg_ref + self.fpg_slope * (age - self.age_ref)

    # ------------------------------------------------------------ measurements (noisy)

    def glycaemia(
        self, draws: Draws, age: float, *, diabetic: bool, diagnosis: bool = False, insulin: bool = False
    ) -> tuple[float, float]:
        """(HbA1c %, fasting glucose mg/dL) as a lab would report them."""
        if diagnosis:
            a1c = 6.5 + draws.gamma2(0.35)
            return a1c, max(126.0, 28.7 * a1c - 46.7 + draws.normal(0.0, 10.0))
        if diabetic:
            a1c = min(max(draws.normal(self.a1c_treated + 0.4 * insulin, 0.6), 6.0), 13.5)
            return a1c, min(max(28.7 * a1c - 46.7 + draws.normal(0.0, 15.0), 90.0), 400.0)
        latent = self.fasting_glucose(age)
        glucose = min(max(latent + draws.normal(0.0, 4.0), 65.0), 125.0)
        a1c = min(max(5.7 + (latent - 100.0) * 0.8 / 26.0 + draws.normal(0.0, 0.15), 4.3), 6.4)
        return a1c, glucose

    def lipids(self, draws: Draws, age: float, *, statin: bool, diabetic: bool) -> tuple[float, float, float, float]:
        """(total cholesterol, HDL, LDL, triglycerides) in mg/dL; LDL follows Friedewald."""
        bmi = self.bmi(age)
        total = self.tc0 + 0.6 * max(min(age, 65.0) - 25.0, 0.0) + draws.normal(0.0, 10.0)
        if statin:
            total *= 0.72
        hdl = max(self.hdl0 - 0.6 * (bmi - 27.0) + draws.normal(0.0, 4.0), 20.0)
        triglycerides = min(
            self.tg0 * exp(0.03 * (bmi - 27.0)) * (1.3 if diabetic else 1.0) * exp(draws.normal(0.0, 0.2)), 1500.0
        )
        ldl = max(total - hdl - triglycerides / 5.0 + draws.normal(0.0, 6.0), 25.0)
        total = max(total, ldl + hdl + 5.0)
        return total, hdl, ldl, triglycerides

    def kidney(self, draws: Draws, age: float, *, stage: int) -> tuple[float, float]:
        """(creatinine mg/dL, eGFR) for an adult; eGFR is recomputed from the rounded creatinine."""
        if stage >= 4:
            target = self.ckd4_level
        elif stage == 3:
            target = self.ckd3_level
        else:
            target = max(125.0 - 0.75 * age + self.egfr_offset, 62.0)
        target += draws.normal(0.0, 2.0)
        if stage == 3:
            target = min(max(target, 31.0), 58.5)
        elif stage >= 4:
            target = min(max(target, 16.0), 28.5)
        else:
            target = max(target, 62.0)
        creatinine = round(creatinine_for(target, age, self.female), 2)
        return creatinine, ckd_epi_2021(creatinine, age, self.female)
