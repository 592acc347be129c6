"""A patient's state in the simulation: who they are, what they have, and the helpers every kind of care uses.

``PatientState`` holds identity, latent risk factors, conditions, medications and utilisation history; the
care classes built on it (``_care``, ``_hospital``) write encounters, and ``_life.PatientLife`` plays the
calendar. Type 2 diabetes ground truth lives here because its probability is a function of this state alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from heapq import heappush
from math import exp
from typing import Any

from carelake.synth._body import Body
from carelake.synth._calendar import Calendar
from carelake.synth._chart import Chart, Visit
from carelake.synth._draws import Draws, IdSource, Weighted
from carelake.synth._people import Person, draw_age, draw_person, draw_race, duplicate_of
from carelake.synth._risk import (
    DIABETES,
    INCIDENCE,
    PREVALENCE,
    RiskFactors,
    age_band,
    diabetes_group,
    logistic,
    relative_risk,
    yearly_rate,
)
from carelake.synth._terminology import CONDITIONS, MRN_SYSTEM, SECOND_MRN_SYSTEM
from carelake.synth._world import Site, World

_UTC = dt.UTC
# Event kinds on a patient's queue.
INTAKE, WELLNESS, SICK, EMERGENCY, ADMIT, READMIT, DIAGNOSE, DIABETES_ONSET, DEATH = range(9)
# SEER: the commonest sites among prevalent cancers, by sex.
_CANCER_SITES_FEMALE = Weighted([("cancer_breast", 0.55), ("cancer_lung", 0.15), ("cancer", 0.3)])
_CANCER_SITES_MALE = Weighted([("cancer_prostate", 0.5), ("cancer_lung", 0.2), ("cancer", 0.3)])
PREVALENT = (
    "t2d",
    "htn",
    "hld",
    "cad",
    "mi",
    "afib",
    "hf",
    "stroke",
    "ckd3",
    "copd",
    "asthma",
    "depression",
    "dementia",
    "cancer",
)


class Truth:
    """Ground-truth rows for one chunk of patients, in the order patients finish."""

    __slots__ = ("diabetes", "duplicates", "faults", "patients", "readmissions")

    def __init__(self) -> None:
        self.patients: list[dict[str, Any]] = []
        self.readmissions: list[dict[str, Any]] = []
        self.diabetes: list[dict[str, Any]] = []
        self.duplicates: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []


@dataclass(slots=True)
class Context:
    """What every patient in a chunk shares."""

    draws: Draws
    ids: IdSource
    cal: Calendar
    world: World
    window_start: int
    window_end: int
    end_year: int
    duplicate_rate: float
    noise: Draws
    noise_ids: IdSource
    truth: Truth


@dataclass(slots=True)
class Course:
    """A medication course: the MedicationRequest and when it is taken."""

    klass: str
    resource: dict[str, Any]
    start: int
    stop: int | None


class PatientState:
    """Identity, latent traits and clinical state of one simulated patient."""

    def __init__(self, ctx: Context, patient_id: str) -> None:
        self.ctx = ctx
        self.d = d = ctx.draws
        self.cal = cal = ctx.cal
        self.chart = Chart(ctx.ids, cal)
        self.id = patient_id
        self.ref = {"reference": f"Patient/{patient_id}"}
        start, end = ctx.window_start, ctx.window_end
        span = end - start + 1
        years = span / 365.25
        sex = "female" if d.chance(0.505) else "male"
        race, ethnicity = draw_race(d)
        newborn_share = 0.011 * years / (1.0 + 0.011 * years)
        if d.chance(newborn_share):
            birth = start + d.between(0, span - 2)
            entry = birth
        else:
            age = draw_age(d)
            birth = start - int(age * 365.25) - d.between(0, 364)
            entry = start if d.chance(0.65) else start + d.between(0, max(span - 60, 0))
        self.birth, self.entry = birth, entry
        self.person = draw_person(
            d,
            sex=sex,
            birth=birth,
            race=race,
            ethnicity=ethnicity,
            age=int((end - birth) / 365.25),
            mrn_system=MRN_SYSTEM,
        )
        self.female = sex == "female"
        self.race, self.ethnicity = race, ethnicity
        self.group = diabetes_group(race, ethnicity)
        age_at_entry = self.age(entry)
        self.family_history = d.chance(0.30 + (0.08 if self.group in ("hispanic", "black", "aian") else 0.0))
        self.body = Body(
            d,
            sex=sex,
            race=race,
            ethnicity=ethnicity,
            age_at_start=max(age_at_entry, 0.0),
            family_history=self.family_history,
        )
        world = ctx.world
        self.clinic: Site = d.pick(world.clinics)
        self.gp = d.pick(self.clinic.clinicians)
        self.hospital: Site = world.hospitals[0] if d.chance(0.55) else d.pick(world.hospitals)
        shift = {"black": 0.5, "aian": 0.65, "nhpi": 0.3, "asian": 0.05}.get(race, 0.0)
        self.deprivation = d.normal(0.45 if ethnicity == "hispanic" else shift, 1.0)
        if age_at_entry >= 65:
            self.payer = world.payers[2]
        elif self.deprivation > 1.0 and d.chance(0.7):
            self.payer = world.payers[1]
        else:
            self.payer = world.payers[0] if d.chance(0.6) else world.payers[3]
        self.smoking = self._initial_smoking(age_at_entry)
        self.cancer_site = d.weighted(_CANCER_SITES_FEMALE if self.female else _CANCER_SITES_MALE)
        self.housing = d.chance(min(2.5 * self._social_base("housing"), 0.9))
        self.food = d.chance(min(2.5 * self._social_base("food"), 0.9))
        self.transport = d.chance(min(2.5 * self._social_base("transport"), 0.9))
        self.ever_social = {"housing": self.housing, "food": self.food, "transport": self.transport}
        # clinical state
        self.conditions: dict[str, int] = {}
        self.problem_refs: dict[str, dict[str, Any]] = {}
        self.pending: set[str] = set()
        self.prevalent: dict[str, int] = {}
        self.meds: dict[str, Course] = {}
        self.courses: list[Course] = []
        self.admissions: list[int] = []
        self.ed_days: list[int] = []
        self.in_hospital_until = -1
        self.block_until = -1
        self.pending_readmission = -1
        self.dead = False
        self.death: int | None = None
        self.death_minute = 0
        self.dm_onset: int | None = None
        self.dm_year: dict[int, tuple[float, int, int]] = {}
        self.htn_year: dict[int, float] = {}
        self.dm_rows: list[dict[str, Any]] = []
        self._projection: dict[int, tuple[float, float, float]] = {}
        self.vaccines: dict[str, tuple[int, int]] = {}
        self.flu_seasons: set[int] = set()
        self.last_screen: dict[str, int] = {}
        self.consent = False
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        # a second Patient record for the same person
        self.dup_person: Person | None = None
        self.dup_ref: dict[str, str] | None = None
        self.dup_from = end + 1
        self.dup_share = 0.0
        self.dup_used = False
        noise = ctx.noise  # duplicates draw from their own stream: the rate never changes who the patients are
        if noise.chance(ctx.duplicate_rate):
            self.dup_person, changes = duplicate_of(self.person, noise, cal, mrn_system=SECOND_MRN_SYSTEM)
            dup_id = ctx.noise_ids.new()
            self.dup_ref = {"reference": f"Patient/{dup_id}"}
            self.dup_from = entry + int(noise.uniform(0.0, 0.6) * (end - entry))
            self.dup_share = noise.uniform(0.3, 0.8)
            ctx.truth.duplicates.append(
                {"patient_id": patient_id, "duplicate_patient_id": dup_id, "changes": ";".join(changes)}
            )
        self.patient_resource = self.chart.patient(
            patient_id, self.person, adult=self.age(end) >= 18, gp=self.gp, clinic=self.clinic, payer=self.payer
        )
        if self.dup_person is not None and self.dup_ref is not None:
            self.chart.patient(
                self.dup_ref["reference"][8:],
                self.dup_person,
                adult=self.age(end) >= 18,
                gp=self.gp,
                clinic=self.clinic,
                payer=self.payer,
            )
        self._draw_prevalent(entry, age_at_entry)

    # ------------------------------------------------------------ helpers

    def age(self, day: int) -> float:
        return (day - self.birth) / 365.25

    def _push(self, day: int, kind: int, payload: Any = None) -> None:
        self.seq += 1
        heappush(self.heap, (day, self.seq, kind, payload))

    def _social_base(self, need: str) -> float:
        a, b = {"housing": (-3.4, 0.9), "food": (-3.2, 0.9), "transport": (-3.6, 0.8)}[need]
        return logistic(a + b * self.deprivation)

    def _initial_smoking(self, age: float) -> str:
        d = self.d
        if age < 13:
            return "never"
        if age < 18:
            return "current" if d.chance(0.03) else "never"
        boost = 1.5 if self.deprivation > 1.0 else 1.0
        older = 0.6 if age >= 65 else 1.0
        u = d.u()
        if u < 0.11 * boost * older:
            return "current"
        if u < 0.13 * boost * older:
            return "some-days"
        if u < 0.13 * boost * older + 0.22 * (1.3 if age >= 50 else 0.8):
            return "former"
        return "never"

    def _subject(self, day: int) -> tuple[dict[str, str], Person]:
        if (
            self.dup_ref is not None
            and self.dup_person is not None
            and day >= self.dup_from
            and (not self.dup_used or self.ctx.noise.u() < self.dup_share)
        ):
            self.dup_used = True
            return self.dup_ref, self.dup_person
        return self.ref, self.person

    def _active(self, klass: str, day: int) -> bool:
        course = self.meds.get(klass)
        return course is not None and course.start <= day and (course.stop is None or course.stop > day)

    def _active_count(self, day: int) -> int:
        return sum(1 for c in self.meds.values() if c.start <= day and (c.stop is None or c.stop > day))

    def _factors(self, day: int) -> RiskFactors:
        return RiskFactors(
            self.body.bmi(self.age(day)), self.smoking, self.race, self.deprivation, frozenset(self.conditions)
        )

    def _stamp(self, day: int, minute: int) -> dt.datetime:
        """Like the calendar's ``stamp``: minutes past midnight may spill into later days (a late same-day stay)."""
        day, minute = day + minute // 1440, minute % 1440
        return dt.datetime.combine(self.cal.to_date(day), dt.time(minute // 60, minute % 60), tzinfo=_UTC)

    def _draw_prevalent(self, day: int, age: float) -> None:
        """Conditions the patient already has when they enter the record (written down at the intake visit)."""
        d = self.d
        for key in PREVALENT:
            if key == "t2d":
                if age < 18:
                    continue
                rate = PREVALENCE["t2d"][age_band(age)] * min(
                    2.5,
                    0.8
                    * exp(
                        0.08 * (self.body.bmi(age) - 29.0)
                        + 0.5 * self.family_history
                        + DIABETES.ethnicity.get(self.group, 0.0)
                    ),
                )
            else:
                rate = PREVALENCE[key][age_band(age)]
                if rate <= 0.0:
                    continue
                rate *= relative_risk(key, self._factors(day))
            if d.chance(min(rate, 0.9)):
                earliest = self.birth + int(365.25 * (18 if age >= 18 and key != "asthma" else 1))
                onset = min(max(day - int(d.expo(6.0) * 365.25) - 1, earliest), day - 1)
                self.conditions[key] = onset
                self.prevalent[key] = onset
                if key == "t2d":
                    self.dm_onset = onset

    def _update_social(self) -> None:
        d = self.d
        self.housing = d.chance(0.6) if self.housing else d.chance(self._social_base("housing"))
        self.food = d.chance(0.6) if self.food else d.chance(self._social_base("food"))
        self.transport = d.chance(0.6) if self.transport else d.chance(self._social_base("transport"))
        ever = self.ever_social
        ever["housing"] |= self.housing
        ever["food"] |= self.food
        ever["transport"] |= self.transport

    def _update_smoking(self, age: float) -> None:
        d = self.d
        if self.smoking in ("current", "some-days"):
            if d.chance(0.05):
                self.smoking = "former"
        elif self.smoking == "never" and 15.0 <= age < 25.0 and d.chance(0.015):
            self.smoking = "current"

    def _coded(self, key: str) -> str:
        """The terminology entry a condition is written with (cancer is coded by its site)."""
        return self.cancer_site if key == "cancer" else key

    def _problems(self) -> list[str]:
        return [CONDITIONS[self._coded(key)].snomed_display for key in self.conditions if key in self.problem_refs]

    def _medications(self, day: int) -> list[str]:
        return [
            c.resource["medicationCodeableConcept"]["text"]
            for c in self.meds.values()
            if c.start <= day and (c.stop is None or c.stop > day)
        ]

    def _death_event(self, day: int) -> None:
        d = self.d
        if self.pending_readmission >= day:
            later = self.pending_readmission + d.between(10, 60)
            if later <= self.ctx.window_end:
                self._push(later, DEATH)
            return
        if day <= self.in_hospital_until:
            later = self.in_hospital_until + d.between(1, 20)
            if later <= self.ctx.window_end:
                self._push(later, DEATH)
            return
        self._die(day, d.between(0, 1439))

    def _die(self, day: int, minute: int) -> None:
        self.dead = True
        self.death = day + minute // 1440
        self.death_minute = minute % 1440
        self.heap.clear()

    # ------------------------------------------------------------ type 2 diabetes ground truth

    def _diabetes_hazard(self, year: int, *, hypertension: bool) -> float:
        """The model's yearly hazard with the patient's state on 1 January of ``year``."""
        age = (
            self.age(self.cal.day(year))
            if year > self.cal.year(self.entry)
            else self.age(max(self.cal.day(year), self.entry))
        )
        body = self.body
        return logistic(
            DIABETES.logit(
                age=age,
                bmi=body.bmi(age),
                family_history=self.family_history,
                hypertension=hypertension,
                glucose=body.fasting_glucose(age),
                glucose_trend=body.fpg_slope,
                activity=body.activity,
                group=self.group,
            )
        )

    def _diabetes_index(self, visit: Visit, day: int) -> None:
        """Record the model's 5-year probability of a diagnosis as seen from this visit."""
        year = self.cal.year(day)
        hazard, ys, ye = self.dm_year.get(year, (0.0, day, day))
        length = ye - ys + 1
        before = (day - ys + 1) / length
        after = (ye - day) / length
        survive_rest = 1.0 - hazard * after / max(1.0 - hazard * before, 1e-12)
        if "htn" in self.conditions:
            with_htn = 1.0
        else:
            rate = self.htn_year.get(year, 0.0)
            with_htn = rate * after / max(1.0 - rate * before, 1e-12)
        no_htn = 1.0 - with_htn
        for ahead in range(1, 6):
            h0, h1, q = self._project(year + ahead)
            no_htn *= 1.0 - h0
            with_htn *= 1.0 - h1
            with_htn += no_htn * q
            no_htn *= 1.0 - q
        probability = 1.0 - survive_rest * (no_htn + with_htn)
        age = self.age(day)
        self.dm_rows.append(
            {
                "patient_id": self.id,
                "encounter_id": visit.id,
                "index_date": self.cal.to_date(day),
                "age": round(age, 2),
                "bmi": round(self.body.bmi(age), 2),
                "family_history": self.family_history,
                "hypertension": "htn" in self.conditions,
                "fasting_glucose_latent": round(self.body.fasting_glucose(age), 2),
                "glucose_trend_per_year": round(self.body.fpg_slope, 3),
                "activity_min_week": round(self.body.activity, 1),
                "ethnicity_group": self.group,
                "hazard_index_year": hazard,
                "probability_5y": probability,
                "horizon_end": dt.date(year + 5, 12, 31),
                "_day": day,
                "_horizon": self.cal.day(year + 5, 12, 31) if year + 5 <= self.cal.last_year else 10**9,
            }
        )

    def _project(self, year: int) -> tuple[float, float, float]:
        """Diabetes hazards without and with hypertension, and the hypertension rate, for a future full year."""
        known = self._projection.get(year)
        if known is None:
            age = self.age(self.cal.day(year))
            factors = RiskFactors(self.body.bmi(age), self.smoking, self.race, self.deprivation, frozenset())
            known = (
                self._diabetes_hazard(year, hypertension=False),
                self._diabetes_hazard(year, hypertension=True),
                yearly_rate("htn", age, factors, INCIDENCE),
            )
            self._projection[year] = known
        return known
