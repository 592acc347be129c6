"""One patient's life inside the record window: what happens to them, when, and the ground truth it leaves.

Time advances a calendar year at a time. At the start of each year the patient's risks are evaluated once
(new chronic conditions, a type 2 diabetes diagnosis, death, how many visits of each kind) and the resulting
events go on a queue; events are then played in date order, each one writing its encounter and the
resources recorded during it. Unplanned readmissions are drawn at each discharge from the readmission model
and put on the same queue, so outcome labels and encounter dates agree by construction.
"""

from __future__ import annotations

from heapq import heappop

from carelake.synth._hospital import HospitalCare
from carelake.synth._patient import (
    ADMIT,
    DEATH,
    DIABETES_ONSET,
    DIAGNOSE,
    EMERGENCY,
    INTAKE,
    READMIT,
    SICK,
    WELLNESS,
    Context,
    Truth,
)
from carelake.synth._risk import CKD_PROGRESSION, INCIDENCE, age_band, charlson, logistic, mortality, relative_risk
from carelake.synth._terminology import CHRONIC

__all__ = ["Context", "PatientLife", "Truth"]

# Chronic conditions that start at a yearly incidence; type 2 diabetes has its own onset model (_risk.py).
_INCIDENT = tuple(key for key in CHRONIC if key != "t2d")
_VIA_HOSPITAL = {"mi": "ami", "stroke": "stroke"}


class PatientLife(HospitalCare):
    """Simulates one patient and leaves their resources in ``chart`` and their truth rows in the context."""

    def run(self) -> None:
        ctx = self.ctx
        self._push(min(self.entry + self.d.between(0, 30), ctx.window_end), INTAKE)
        for year in range(self.cal.year(self.entry), ctx.end_year + 1):
            if self.dead:
                break
            self._year(year)
        self._finish()

    def _year(self, year: int) -> None:
        d, cal = self.d, self.cal
        ys = max(cal.day(year), self.entry)
        ye = cal.day(year, 12, 31)
        length = ye - ys + 1
        frac = 1.0 if length >= 365 else length / 365.0
        age = self.age(ys)
        self._update_social()
        self._update_smoking(age)
        factors = self._factors(ys)
        conditions = self.conditions
        band = age_band(age)
        for key in _INCIDENT:
            if key in conditions or key in self.pending:
                continue
            rate = INCIDENCE[key][band]
            if rate <= 0.0:
                continue
            rate = min(rate * relative_risk(key, factors), 0.95) * frac
            if key == "htn":
                self.htn_year[year] = rate
            if d.u() < rate:
                day = ys + int(d.u() * length)
                self.pending.add(key)
                if key in _VIA_HOSPITAL:
                    self._push(day, ADMIT, (_VIA_HOSPITAL[key], key))
                else:
                    self._push(day, DIAGNOSE, key)
        if (
            "ckd3" in conditions
            and "ckd4" not in conditions
            and "ckd4" not in self.pending
            and d.chance(CKD_PROGRESSION * frac)
        ):
            self.pending.add("ckd4")
            self._push(ys + int(d.u() * length), DIAGNOSE, "ckd4")
        if age >= 18.0 and "t2d" not in conditions and "t2d" not in self.pending:
            hazard = self._diabetes_hazard(year, hypertension="htn" in conditions) * frac
            self.dm_year[year] = (hazard, ys, ye)
            if d.u() < hazard:
                self.pending.add("t2d")
                self._push(ys + int(d.u() * length), DIABETES_ONSET)
        if d.u() < mortality(age, charlson(conditions)) * frac:
            self._push(ys + int(d.u() * length), DEATH)
        self._schedule_visits(age, ys, length, frac)
        self._play(until=ye)

    def _schedule_visits(self, age: float, ys: int, length: int, frac: float) -> None:
        d = self.d
        chronic = sum(1 for key in CHRONIC if key in self.conditions)
        burden = charlson(self.conditions)
        social = self.housing + self.food + self.transport
        smoker = self.smoking in ("current", "some-days")
        if age < 18.0:
            wellness = 0.9 if age < 2.0 else 0.75
            sick = 1.4 if age < 5.0 else 0.6
            emergency = 0.35 if age < 5.0 else 0.2
            admission = 0.008
        else:
            wellness = (0.45 if age < 50 else 0.6 if age < 65 else 0.75) + (0.1 if chronic else 0.0)
            sick = min(0.3 + 0.01 * age + 0.4 * chronic, 5.0)
            emergency = 0.15 + 0.002 * max(age - 50.0, 0.0) + 0.08 * chronic + 0.25 * social + 0.12 * smoker
            admission = logistic(-4.1 + 0.028 * (age - 40.0) + 0.30 * burden + 0.25 * social)
        if d.chance(min(wellness * frac, 1.0)):
            self._push(ys + int(d.u() * length), WELLNESS)
        for _ in range(d.poisson(sick * frac)):
            self._push(ys + int(d.u() * length), SICK)
        for _ in range(d.poisson(emergency * frac)):
            self._push(ys + int(d.u() * length), EMERGENCY)
        for _ in range(d.poisson(admission * frac)):
            self._push(ys + int(d.u() * length), ADMIT, None)

    def _play(self, *, until: int) -> None:
        heap = self.heap
        while heap and heap[0][0] <= until and not self.dead:
            day, _, kind, payload = heappop(heap)
            if kind == DEATH:
                self._death_event(day)
            elif kind == READMIT:
                self._admission(day, payload[0], readmission_of=payload[1])
            elif kind == ADMIT:
                self._admission_event(day, payload)
            elif day <= self.in_hospital_until:
                if kind in (DIAGNOSE, DIABETES_ONSET, INTAKE):
                    self._push(
                        min(self.in_hospital_until + 1 + self.d.between(2, 10), self.ctx.window_end), kind, payload
                    )
            elif kind == INTAKE:
                self._wellness(day, intake=True)
            elif kind == WELLNESS:
                self._wellness(day, intake=False)
            elif kind == SICK:
                self._sick(day)
            elif kind == EMERGENCY:
                self._emergency(day, None, admit_allowed=True)
            elif kind == DIAGNOSE:
                self._diagnosis_visit(day, payload)
            elif kind == DIABETES_ONSET:
                self._diabetes_onset(day)
        if self.dead:
            heap.clear()

    def _finish(self) -> None:
        ctx, cal = self.ctx, self.cal
        death = self.death
        for course in self.courses:
            stop = course.stop
            if death is not None and (stop is None or stop > death):
                stop = death
            if stop is not None and stop <= ctx.window_end:
                course.resource["status"] = "stopped"
                course.resource["dispenseRequest"]["validityPeriod"]["end"] = cal.date(max(stop, course.start))
        if death is not None:
            stamp = cal.stamp(death, self.death_minute)
            self.patient_resource["deceasedDateTime"] = stamp
            if self.dup_ref is not None:
                for resource_type, resource in self.chart.items[:3]:
                    if resource_type == "Patient" and resource["id"] == self.dup_ref["reference"][8:]:
                        resource["deceasedDateTime"] = stamp
        onset = self.dm_onset
        first_probability = None
        for row in self.dm_rows:
            day, horizon = row.pop("_day"), row.pop("_horizon")
            happened = onset is not None and day < onset <= horizon
            complete = horizon <= ctx.window_end and (death is None or death > horizon or happened)
            row["outcome_5y"] = 1 if happened else (0 if complete else None)
            row["followup_complete"] = complete
            row["onset_date"] = cal.to_date(onset) if onset is not None and onset > day else None
            if first_probability is None:
                first_probability = row["probability_5y"]
        ctx.truth.diabetes.extend(self.dm_rows)
        for row in ctx.truth.readmissions[-len(self.admissions) :] if self.admissions else ():
            row.pop("_discharge_day", None)
        ctx.truth.patients.append(
            {
                "patient_id": self.id,
                "duplicate_patient_id": self.dup_ref["reference"][8:] if self.dup_ref else None,
                "birth_date": cal.to_date(self.birth),
                "sex": self.person.sex,
                "race": self.race,
                "ethnicity": self.ethnicity,
                "entry_date": cal.to_date(self.entry),
                "deceased_date": cal.to_date(death) if death is not None else None,
                "height_cm": round(self.body.height_adult, 1),
                "bmi_at_entry": round(self.body.bmi(self.age(self.entry)), 2),
                "family_history_diabetes": self.family_history,
                "smoking_at_end": self.smoking,
                "activity_min_week": round(self.body.activity, 1),
                "deprivation": round(self.deprivation, 3),
                "housing_instability_ever": self.ever_social["housing"],
                "food_insecurity_ever": self.ever_social["food"],
                "transport_barrier_ever": self.ever_social["transport"],
                "charlson_at_end": charlson(self.conditions),
                "conditions_at_end": ";".join(sorted(self.conditions)),
                "diabetes_prevalent": "t2d" in self.prevalent,
                "diabetes_onset_date": cal.to_date(onset) if onset is not None else None,
                "diabetes_5y_probability": first_probability,
                "admissions": len(self.admissions),
                "ed_visits": len(self.ed_days),
                "research_opt_out": self.consent,
            }
        )
