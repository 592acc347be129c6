"""Outpatient care: check-ups, sick visits, new diagnoses, screening, vaccines, and what gets written down.

Every visit records what a real one would (vital signs, labs ordered for the patient's risks, screening
answers, prescriptions, sometimes a note), with values taken from the patient's physiology (``_body``).
"""

from __future__ import annotations

from typing import Any

from carelake.synth._chart import Visit
from carelake.synth._draws import Weighted
from carelake.synth._notes import discharge_summary, emergency_note, progress_note
from carelake.synth._patient import PREVALENT, Course, PatientState
from carelake.synth._people import Person
from carelake.synth._terminology import (
    ALLERGIES,
    CARE_PLANS,
    CHRONIC,
    CLINICAL_RESOLVED,
    CONDITIONS,
    COUNSELLING_CATEGORY,
    DIETITIAN_REFERRAL,
    DISCHARGE_DISPOSITIONS,
    HRSN_FOOD_ANSWERS,
    HRSN_FOOD_RAN_OUT,
    HRSN_FOOD_WORRY,
    HRSN_HOUSING,
    HRSN_HOUSING_ANSWERS,
    HRSN_TRANSPORT,
    HRSN_YES_NO,
    LAB_CATEGORY,
    LAB_ORDERS,
    LOINC,
    MEDICATIONS,
    SDOH_CATEGORY,
    SDOHCC,
    SMOKING_ANSWERS,
    SMOKING_STATUS,
    SNOMED,
    SOCIAL_REFERRALS,
    SOCIAL_SERVICE_CATEGORY,
    concept,
)

_FEVER = frozenset({"uri", "bronchitis", "sinusitis", "otitis", "pneumonia", "sepsis", "uti", "cellulitis"})
_RESPIRATORY = frozenset({"uri", "bronchitis", "pneumonia", "copd_exacerbation", "chf_exacerbation", "asthma"})
_DISTRESS = frozenset({"pneumonia", "copd_exacerbation", "chf_exacerbation", "sepsis"})
_ANTIHYPERTENSIVES = ("acei", "ccb", "thiazide", "beta_blocker")
# condition -> medication starts: (class, medication key, probability)
_TREATMENT: dict[str, tuple[tuple[str, str, float], ...]] = {
    "htn": (("acei", "lisinopril", 0.6), ("ccb", "amlodipine", 0.45)),
    "t2d": (("metformin", "metformin", 0.85), ("statin", "atorvastatin", 0.5)),
    "hld": (("statin", "atorvastatin", 0.55), ("statin", "simvastatin", 1.0)),
    "cad": (("aspirin", "aspirin", 0.8), ("statin", "atorvastatin", 0.8)),
    "mi": (("aspirin", "aspirin", 0.95), ("statin", "atorvastatin", 0.9), ("beta_blocker", "metoprolol", 0.8)),
    "hf": (("diuretic", "furosemide", 0.85), ("beta_blocker", "metoprolol", 0.7), ("acei", "lisinopril", 0.6)),
    "afib": (
        ("anticoagulant", "apixaban", 0.6),
        ("anticoagulant", "warfarin", 0.6),
        ("beta_blocker", "metoprolol", 0.6),
    ),
    "copd": (("rescue_inhaler", "albuterol", 0.9), ("controller_inhaler", "fluticasone", 0.6)),
    "asthma": (("rescue_inhaler", "albuterol", 0.9), ("controller_inhaler", "fluticasone", 0.5)),
    "depression": (("ssri", "sertraline", 0.6),),
    "stroke": (("aspirin", "aspirin", 0.8), ("statin", "atorvastatin", 0.8)),
    "ckd3": (("acei", "lisinopril", 0.5),),
}
ACUTE_TREATMENT = {
    "sinusitis": ("amoxicillin", 10),
    "otitis": ("amoxicillin", 10),
    "uti": ("amoxicillin", 7),
    "bronchitis": ("acetaminophen", 7),
    "uri": ("acetaminophen", 5),
    "sprain": ("ibuprofen", 10),
    "backpain": ("ibuprofen", 14),
    "migraine": ("ibuprofen", 5),
    "pneumonia": ("amoxicillin", 7),
    "cellulitis": ("amoxicillin", 10),
}
_CHILD_SICK = Weighted([("otitis", 5.0), ("uri", 8.0), ("gastroenteritis", 2.0), ("sprain", 1.0)])
_ADULT_SICK = Weighted(
    [
        ("uri", 6.0),
        ("sinusitis", 4.0),
        ("bronchitis", 3.0),
        ("backpain", 5.0),
        ("sprain", 2.0),
        ("uti", 3.0),
        ("migraine", 2.0),
    ]
)


class OutpatientCare(PatientState):
    """Clinic visits and the measurements every kind of encounter shares."""

    # ------------------------------------------------------------ measurements

    def _vitals(self, visit: Visit, day: int, *, full: bool, wellness: bool = False, acute: str | None = None) -> None:
        """Record vital signs; ``visit.vitals`` keeps the same numbers for the note."""
        z, u = self.d.z, self.d.u
        quantity, body, meds, conditions = self.chart.quantity, self.body, self.meds, self.conditions
        age = (day - self.birth) / 365.25
        facts = visit.vitals
        fever = acute in _FEVER
        respiratory = acute in _RESPIRATORY
        heart_rate = 72.0 + body.hr_offset + 5.0 * z()
        if age < 11.25:
            heart_rate += 45.0 - 4.0 * age
        if self.smoking == "current" or self.smoking == "some-days":
            heart_rate += 5.0
        if fever:
            heart_rate += 14.0
        if "beta_blocker" in meds and self._active("beta_blocker", day):
            heart_rate -= 8.0
        quantity("heart_rate", heart_rate, visit)
        facts["HR"] = heart_rate
        bmi_true = body.bmi(age)
        if age >= 3.0:
            if age >= 18.0:
                systolic = 108.0 + 0.45 * (age - 20.0) + 0.5 * (bmi_true - 25.0) + body.sbp_offset + 7.0 * z()
                if "htn" in conditions:
                    systolic += 14.0 - 6.0 * sum(1 for k in _ANTIHYPERTENSIVES if k in meds and self._active(k, day))
            else:
                systolic = 95.0 + 1.2 * age + 0.4 * body.sbp_offset + 6.0 * z()
            diastolic = 0.4 * systolic + 22.0 + 5.0 * z()
            self.chart.blood_pressure(systolic, diastolic, visit)
            facts["BP"] = (systolic, diastolic)
        if full or fever or respiratory or u() < 0.3:
            temperature = 36.8 + 0.25 * z() + (1.2 + u() if fever else 0.0)
            quantity("temperature", temperature, visit)
            facts["Temp"] = temperature
        if full or respiratory:
            rate = 16.0 + 1.5 * z()
            if age < 20.0:
                rate += (20.0 - age) * 0.6
            saturation = 98.0 + z()
            if "copd" in conditions:
                rate += 2.0
                saturation -= 3.0
            if acute in _DISTRESS:
                rate += 5.0
                saturation -= 5.0
            quantity("resp_rate", rate, visit)
            facts["RR"] = rate
            saturation = min(saturation, 100.0)
            quantity("spo2", saturation, visit)
            facts["SpO2"] = saturation
        height = body.height(age)
        weight = max(bmi_true * (height / 100.0) ** 2 + (0.6 if age >= 18.0 else 0.2) * z(), 2.0)
        quantity("weight", weight, visit)
        facts["Wt"] = weight
        if wellness:
            measured = height + 0.5 * z()
            if age < 18.0 or u() < 0.5:
                quantity("height", measured, visit)
                facts["Ht"] = measured
            if age >= 2.0:
                bmi = weight / (measured / 100.0) ** 2
                quantity("bmi", bmi, visit)
                facts["BMI"] = bmi

    def _glycaemia(self, visit: Visit, day: int, *, diagnosis: bool = False) -> tuple[float, float]:
        chart = self.chart
        a1c, glucose = self.body.glycaemia(
            self.d,
            self.age(day),
            diabetic="t2d" in self.conditions,
            diagnosis=diagnosis,
            insulin=self._active("insulin", day),
        )
        chart.service_request(concept(LOINC, *LAB_ORDERS["hba1c"]), [LAB_CATEGORY], visit, status="completed")
        chart.quantity("glucose", glucose, visit)
        observation = chart.quantity("hba1c", a1c, visit)
        if diagnosis:
            chart.protected.add(id(observation))
        visit.labs["HbA1c"] = f"{a1c:.1f}%"
        visit.labs["Fasting glucose"] = f"{round(glucose)} mg/dL"
        return a1c, glucose

    def _lipids(self, visit: Visit, day: int) -> float:
        chart = self.chart
        total, hdl, ldl, triglycerides = self.body.lipids(
            self.d, self.age(day), statin=self._active("statin", day), diabetic="t2d" in self.conditions
        )
        if "hld" in self.conditions and not self._active("statin", day):
            total += 45.0
            ldl += 45.0
        chart.service_request(concept(LOINC, *LAB_ORDERS["lipid"]), [LAB_CATEGORY], visit, status="completed")
        chart.quantity("cholesterol", total, visit)
        chart.quantity("hdl", hdl, visit)
        chart.quantity("ldl", ldl, visit)
        chart.quantity("triglycerides", triglycerides, visit)
        visit.labs["LDL"] = f"{round(ldl)} mg/dL"
        return ldl

    def _kidney(self, visit: Visit, day: int) -> None:
        stage = 4 if "ckd4" in self.conditions else 3 if "ckd3" in self.conditions else 0
        creatinine, egfr = self.body.kidney(self.d, self.age(day), stage=stage)
        self.chart.quantity("creatinine", creatinine, visit)
        self.chart.quantity("egfr", egfr, visit)
        visit.labs["Creatinine"] = f"{creatinine:.2f} mg/dL"
        visit.labs["eGFR"] = f"{round(egfr)}"

    # ------------------------------------------------------------ visits

    def _clinic_visit(
        self,
        day: int,
        type_key: str,
        subject: dict[str, str] | None = None,
        person: Person | None = None,
        protected: bool = False,
    ) -> Visit:
        d = self.d
        if subject is None or person is None:
            subject, person = self._subject(day)
        start = 480 + 5 * d.between(0, 104)
        return self.chart.encounter(
            klass="AMB",
            type_key=type_key,
            subject=subject,
            person=person,
            start=day,
            start_minute=start,
            end=day,
            end_minute=start + 20 + 5 * d.between(0, 5),
            clinician=self.gp if d.chance(0.8) else d.pick(self.clinic.clinicians),
            site=self.clinic,
            location="main",
            priority="R",
            protected=protected,
        )

    def _wellness(self, day: int, *, intake: bool) -> None:
        d, chart = self.d, self.chart
        age = self.age(day)
        if intake:
            visit = self._clinic_visit(day, "checkup", self.ref, self.person)
            self._register_history(visit, day)
        else:
            visit = self._clinic_visit(day, "checkup")
        visit.reason = "annual wellness visit"
        self._vitals(visit, day, full=False, wellness=True)
        if age >= 13.0:
            chart.coded(SMOKING_STATUS, SMOKING_ANSWERS[self.smoking], SNOMED, "social-history", visit)
        if age >= 18.0:
            if d.chance(0.6):
                minutes = round(self.body.activity * d.lognormal(1.0, 0.15) / 10.0) * 10.0
                chart.quantity("activity", minutes, visit)
            self._adult_screening(visit, day, age)
        self._vaccinate(visit, day, age, wellness=True)
        if d.chance(0.4):
            self._progress_note(visit, day)
        if age >= 18.0 and "t2d" not in self.conditions:
            self._diabetes_index(visit, day)

    def _adult_screening(self, visit: Visit, day: int, age: float) -> None:
        d, chart, conditions = self.d, self.chart, self.conditions
        bmi = self.body.bmi(age)
        if (age >= 35 or bmi >= 25 or "t2d" in conditions or "prediabetes" in conditions) and d.chance(0.75):
            a1c, glucose = self._glycaemia(visit, day)
            if (
                "t2d" not in conditions
                and "prediabetes" not in conditions
                and (a1c >= 5.7 or glucose >= 100)
                and d.chance(0.06)
            ):
                self._add_problem("prediabetes", visit, day)
                visit.plan.append("Prediabetes: lifestyle counselling, recheck HbA1c in 12 months.")
        if (age >= 40 or "hld" in conditions or "t2d" in conditions or "cad" in conditions) and d.chance(0.55):
            ldl = self._lipids(visit, day)
            if "hld" not in conditions and ldl >= 160 and d.chance(0.5):
                self._add_problem("hld", visit, day)
        if (age >= 50 or "htn" in conditions or "t2d" in conditions or "ckd3" in conditions) and d.chance(0.6):
            self._kidney(visit, day)
        if bmi >= 30 and "obesity" not in conditions and d.chance(0.12):
            self._add_problem("obesity", visit, day)
            if d.chance(0.3):
                chart.service_request(
                    DIETITIAN_REFERRAL,
                    [COUNSELLING_CATEGORY],
                    visit,
                    status="completed",
                    reason=self.problem_refs["obesity"],
                )
        year = self.cal.year(day)
        if d.chance(0.25 if year < 2018 else 0.65):
            self._social_screening(visit)
        if d.chance(0.4):
            chart.procedure("depression_screening", visit)
        if 45 <= age <= 75 and day - self.last_screen.get("colonoscopy", -(10**6)) > 3650 and d.chance(0.07):
            self.last_screen["colonoscopy"] = day
            chart.procedure("colonoscopy", visit)
        if (
            self.female
            and 50 <= age <= 74
            and day - self.last_screen.get("mammography", -(10**6)) > 700
            and (d.chance(0.5))
        ):
            self.last_screen["mammography"] = day
            chart.procedure("mammography", visit)
        if age >= 65 and d.chance(0.5):
            chart.procedure("med_reconciliation", visit)

    def _social_screening(self, visit: Visit) -> None:
        d, chart = self.d, self.chart
        housing_answer = ("none" if d.chance(0.4) else "worried") if self.housing else "steady"
        housing = chart.coded(HRSN_HOUSING, HRSN_HOUSING_ANSWERS[housing_answer], LOINC, "survey", visit)
        worry = ("often" if d.chance(0.4) else "sometimes") if self.food else "never"
        ran_out = ("often" if d.chance(0.3) else "sometimes") if self.food else "never"
        food = chart.coded(HRSN_FOOD_WORRY, HRSN_FOOD_ANSWERS[worry], LOINC, "survey", visit)
        chart.coded(HRSN_FOOD_RAN_OUT, HRSN_FOOD_ANSWERS[ran_out], LOINC, "survey", visit)
        transport = chart.coded(HRSN_TRANSPORT, HRSN_YES_NO["yes" if self.transport else "no"], LOINC, "survey", visit)
        positives = [
            (need, obs)
            for need, flag, obs in (
                ("housing", self.housing, housing),
                ("food", self.food, food),
                ("transport", self.transport, transport),
            )
            if flag
        ]
        if not positives:
            return
        chart.procedure("sdoh_assessment", visit)
        for need, observation in positives:
            if d.chance(0.6):
                code, display, domain, domain_display = SOCIAL_REFERRALS[need]
                chart.service_request(
                    concept(SNOMED, code, display),
                    [SOCIAL_SERVICE_CATEGORY, SDOH_CATEGORY, concept(SDOHCC, domain, domain_display)],
                    visit,
                    status="completed" if d.chance(0.5) else "active",
                    reason=observation,
                )
                visit.plan.append(f"Positive social needs screen ({need}): {display.lower()}.")

    def _register_history(self, visit: Visit, day: int) -> None:
        """First visit in the record: the conditions and medications the patient arrives with."""
        d, chart = self.d, self.chart
        for key in sorted(self.prevalent, key=PREVALENT.index):
            condition = chart.condition(self._coded(key), visit, onset=self.prevalent[key], problem=True)
            self.problem_refs[key] = condition
            self._treat(key, visit, day, condition, category="outpatient")
            if key in CARE_PLANS and d.chance(0.4):
                chart.care_plan(key, visit, condition)
        if self.family_history:
            for relation in ("MTH", "FTH") if d.chance(0.25) else (d.pick(("MTH", "FTH", "SIS", "BRO")),):
                chart.family_history(relation, visit)
        if d.chance(0.2):
            spec = d.pick(ALLERGIES)
            chart.allergy(spec, visit, "severe" if spec[4] == "high" and d.chance(0.3) else "mild")
        if d.chance(0.02):
            chart.consent(visit, self.clinic.ref)
            self.consent = True

    def _add_problem(
        self, key: str, visit: Visit, day: int, *, protected: bool = False, category: str = "outpatient"
    ) -> dict[str, Any]:
        condition = self.chart.condition(self._coded(key), visit, onset=day, problem=True, protected=protected)
        self.conditions[key] = day
        self.problem_refs[key] = condition
        self.pending.discard(key)
        self._treat(key, visit, day, condition, category=category)
        return condition

    def _resolve_problem(self, key: str, day: int) -> None:
        """A problem superseded by a new diagnosis (prediabetes by diabetes, CKD stage 3 by stage 4)."""
        self.conditions.pop(key, None)
        condition = self.problem_refs.pop(key, None)
        if condition is not None:
            condition["clinicalStatus"] = CLINICAL_RESOLVED
            condition["abatementDateTime"] = self.cal.date(day)

    def _treat(self, key: str, visit: Visit, day: int, condition: dict[str, Any], *, category: str) -> None:
        d = self.d
        for klass, med, probability in _TREATMENT.get(key, ()):
            if self._active(klass, day) or not d.chance(probability):
                continue
            resource = self.chart.medication(med, visit, reason=condition, category=category)
            stop = day + int(d.expo(4.0) * 365.25) + 30 if d.chance(0.2) else None
            course = Course(klass, resource, day, stop)
            self.meds[klass] = course
            self.courses.append(course)

    def _sick(self, day: int) -> None:
        d, chart = self.d, self.chart
        age = self.age(day)
        chronic = [key for key in CHRONIC if key in self.conditions]
        if chronic and d.chance(0.6):
            visit = self._clinic_visit(day, "followup")
            focus = d.pick(chronic)
            visit.reason = f"follow-up of {CONDITIONS[focus].snomed_display.lower()}"
            self._vitals(visit, day, full=False)
            if "t2d" in self.conditions and d.chance(0.7):
                a1c, _ = self._glycaemia(visit, day)
                if a1c > 9.0 and not self._active("insulin", day) and d.chance(0.5):
                    self._start("insulin", "insulin", visit, day, self.problem_refs.get("t2d"))
                    visit.plan.append("HbA1c above goal: start basal-bolus insulin.")
            if ("ckd3" in self.conditions or "hf" in self.conditions) and d.chance(0.6):
                self._kidney(visit, day)
            if "htn" in self.conditions and d.chance(0.08):
                klass, med = d.pick((("ccb", "amlodipine"), ("thiazide", "hctz")))
                if not self._active(klass, day):
                    self._start(klass, med, visit, day, self.problem_refs.get("htn"))
                    visit.plan.append("Blood pressure above goal: add a second agent.")
        else:
            visit = self._clinic_visit(day, "symptom")
            reason = d.weighted(_CHILD_SICK if age < 18 else _ADULT_SICK)
            visit.reason = CONDITIONS[reason].snomed_display
            self._vitals(visit, day, full=False, acute=reason)
            condition = chart.condition(reason, visit, onset=day, problem=False, resolved=day + d.between(5, 21))
            self._acute_medication(reason, visit, condition)
        self._vaccinate(visit, day, age, wellness=False)
        if d.chance(0.2):
            self._progress_note(visit, day)

    def _start(self, klass: str, med: str, visit: Visit, day: int, reason: dict[str, Any] | None) -> None:
        resource = self.chart.medication(med, visit, reason=reason, category="outpatient")
        course = Course(klass, resource, day, None)
        self.meds[klass] = course
        self.courses.append(course)

    def _acute_medication(self, reason: str, visit: Visit, condition: dict[str, Any]) -> None:
        treatment = ACUTE_TREATMENT.get(reason)
        if treatment and self.d.chance(0.6):
            med, days = treatment
            self.chart.medication(med, visit, reason=condition, category="community", days=days)
            visit.plan.append(f"{MEDICATIONS[med].display} for {days} days.")

    def _diagnosis_visit(self, day: int, key: str) -> None:
        d, chart = self.d, self.chart
        visit = self._clinic_visit(day, "followup")
        visit.reason = CONDITIONS[self._coded(key)].snomed_display
        if key == "ckd4":
            self._resolve_problem("ckd3", day)
        self.conditions[key] = day
        self._vitals(visit, day, full=key in ("copd", "hf", "asthma"))
        condition = self._add_problem(key, visit, day)
        visit.plan.append(f"New diagnosis: {visit.reason}.")
        if key in ("copd", "asthma"):
            chart.procedure("spirometry", visit, reason=condition)
        elif key == "hf":
            chart.procedure("echo", visit, reason=condition)
        elif key in ("ckd3", "ckd4"):
            self._kidney(visit, day)
        elif key == "hld":
            self._lipids(visit, day)
        if key in CARE_PLANS and d.chance(0.6):
            chart.care_plan(key, visit, condition)
        if d.chance(0.4):
            self._progress_note(visit, day)

    def _diabetes_onset(self, day: int) -> None:
        d, chart = self.d, self.chart
        visit = self._clinic_visit(day, "followup")
        visit.reason = "elevated blood sugar"
        self._vitals(visit, day, full=False)
        self.conditions["t2d"] = day
        self._resolve_problem("prediabetes", day)
        self._glycaemia(visit, day, diagnosis=True)
        condition = self._add_problem("t2d", visit, day, protected=True)
        self.dm_onset = day
        visit.plan.append("New type 2 diabetes mellitus: HbA1c at or above 6.5%. Diabetes education.")
        if d.chance(0.7):
            chart.care_plan("t2d", visit, condition)
        if d.chance(0.3):
            chart.service_request(
                DIETITIAN_REFERRAL, [COUNSELLING_CATEGORY], visit, status="completed", reason=condition
            )
        if d.chance(0.6):
            self._progress_note(visit, day)

    def _vaccinate(self, visit: Visit, day: int, age: float, *, wellness: bool) -> None:
        d = self.d
        year, month = self.cal.year(day), self.cal.month(day)
        season = year if month >= 8 else year - 1
        if (month >= 9 or month <= 2) and season not in self.flu_seasons and age >= 0.5:
            chance = 0.7 if age >= 65 else 0.45 if age >= 18 else 0.55
            if d.chance(chance if wellness else chance * 0.4):
                self._give("flu", visit, day)
                self.flu_seasons.add(season)
        if not wellness:
            return
        given = self.vaccines
        if age < 2.0:
            for key in ("hepb", "dtap", "ipv", "hib", "pcv13") if age < 1.0 else ("mmr", "varicella", "hepa"):
                if key not in given:
                    self._give(key, visit, day)
        elif 4.0 <= age < 7.0 and given.get("dtap", (0, 0))[1] < 2:
            for key in ("dtap", "ipv", "mmr", "varicella"):
                self._give(key, visit, day)
        elif 11.0 <= age < 13.0 and "tdap" not in given:
            for key in ("tdap", "hpv", "mening"):
                self._give(key, visit, day)
        elif 16.0 <= age < 18.0 and given.get("mening", (0, 0))[1] < 2:
            self._give("mening", visit, day)
        elif age >= 18.0:
            last_td = max(given.get("td", (-(10**6), 0))[0], given.get("tdap", (-(10**6), 0))[0])
            if day - last_td > 3650 and d.chance(0.08):
                self._give("tdap" if d.chance(0.5) else "td", visit, day)
            if age >= 65 and d.chance(0.4):
                if "pcv13" not in given:
                    self._give("pcv13", visit, day)
                elif "ppsv23" not in given and day - given["pcv13"][0] > 365:
                    self._give("ppsv23", visit, day)
            if age >= 50 and year >= 2018 and given.get("zoster", (0, 0))[1] < 2 and d.chance(0.2):
                self._give("zoster", visit, day)
            if (
                year >= 2021
                and given.get("covid", (0, 0))[1] < 3
                and day - given.get("covid", (-(10**6), 0))[0] > 180
                and d.chance(0.5)
            ):
                self._give("covid", visit, day)

    def _give(self, key: str, visit: Visit, day: int) -> None:
        d = self.d
        lot = f"{'ABCDEFGHJKLMNPRSTUVWXYZ'[d.between(0, 22)]}{d.between(1000, 9999)}{d.pick('ABCDEF')}"
        self.chart.immunization(key, visit, lot)
        _, count = self.vaccines.get(key, (0, 0))
        self.vaccines[key] = (day, count + 1)

    # ------------------------------------------------------------ notes

    def _progress_note(self, visit: Visit, day: int, emergency: str | None = None) -> None:
        age = int(self.age(day))
        style = self.d.between(0, 2)
        if emergency is not None:
            text = emergency_note(
                self.cal, visit, age=age, problems=self._problems(), disposition=emergency, style=style
            )
            self.chart.document("emergency", text, visit, _end_minute(visit))
        else:
            text = progress_note(
                self.cal, visit, age=age, problems=self._problems(), medications=self._medications(day), style=style
            )
            self.chart.document("progress", text, visit, _end_minute(visit) + 30)

    def _discharge_note(self, visit: Visit, discharge: int, minute: int, disposition: str, readmission: bool) -> None:
        text = discharge_summary(
            self.cal,
            visit,
            age=int(self.age(discharge)),
            problems=self._problems(),
            medications=self._medications(discharge),
            disposition=DISCHARGE_DISPOSITIONS[disposition],
            readmission=readmission,
            style=self.d.between(0, 2),
        )
        self.chart.document("discharge", text, visit, minute + 60)


def _end_minute(visit: Visit) -> int:
    end = visit.resource["period"]["end"]
    return int(end[11:13]) * 60 + int(end[14:16])
