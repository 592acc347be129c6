"""Emergency and inpatient care, and the 30-day readmission ground truth drawn at every discharge.

A discharge is scored with ``_risk.READMISSION`` on the patient's state at that moment; if the draw says
"readmitted", the unplanned admission is put on the patient's queue 1-30 days later, and no other admission
may start in that window, so every label agrees with the encounters in the export.
"""

from __future__ import annotations

from typing import Any

from carelake.synth._care import ACUTE_TREATMENT, OutpatientCare
from carelake.synth._chart import Visit
from carelake.synth._draws import Weighted
from carelake.synth._patient import ADMIT, READMIT
from carelake.synth._risk import READMISSION, charlson, logistic
from carelake.synth._terminology import CONDITIONS

_INPATIENT_PROCEDURES: dict[str, tuple[tuple[str, float], ...]] = {
    "ami": (("ecg", 1.0), ("echo", 0.5), ("pci", 0.6)),
    "chf_exacerbation": (("ecg", 0.8), ("echo", 0.6), ("chest_xray", 0.9)),
    "copd_exacerbation": (("chest_xray", 0.9),),
    "pneumonia": (("chest_xray", 1.0),),
    "hip_fracture": (("hip_replacement", 0.8),),
    "appendicitis": (("appendectomy", 0.95),),
    "cholecystitis": (("cholecystectomy", 0.7),),
    "knee_oa": (("knee_replacement", 1.0),),
    "cad": (("pci", 0.6), ("cabg", 0.4)),
    "chestpain": (("ecg", 1.0),),
    "syncope": (("ecg", 1.0),),
    "stroke": (("ecg", 0.6),),
}
_CHILD_ED = Weighted([("otitis", 4.0), ("uri", 8.0), ("sprain", 6.0), ("gastroenteritis", 6.0), ("abdpain", 3.0)])


class HospitalCare(OutpatientCare):
    """Emergency visits, admissions, discharges and readmissions."""

    def _emergency(self, day: int, reason: str | None, *, admit_allowed: bool) -> Visit:
        d, chart = self.d, self.chart
        age = self.age(day)
        admitted = reason is not None
        if reason is None:
            reason = d.weighted(_CHILD_ED if age < 18 else self._adult_ed_reasons(age))
        subject_ref, person = self._subject(day)
        hospital = self.hospital if d.chance(0.8) else d.pick(self.ctx.world.hospitals)
        if admitted:
            start, duration = 360 + 5 * d.between(0, 132), 120 + 5 * d.between(0, 36)
        else:
            start, duration = d.between(0, 1439), 90 + 5 * d.between(0, 60)
        end_minute = start + duration
        visit = chart.encounter(
            klass="EMER",
            type_key="emergency",
            subject=subject_ref,
            person=person,
            start=day,
            start_minute=start,
            end=day + end_minute // 1440,
            end_minute=end_minute,
            clinician=d.pick(hospital.emergency),
            site=hospital,
            location="ER",
            priority="EM",
        )
        visit.reason = CONDITIONS[reason].snomed_display
        self._vitals(visit, day, full=True, acute=reason)
        condition = chart.condition(reason, visit, onset=day, problem=False, resolved=day + d.between(5, 21))
        chart.diagnose(visit, condition, "CC")
        if age >= 18 and (admitted or d.chance(0.4)):
            self._kidney(visit, day)
        for procedure, probability in _INPATIENT_PROCEDURES.get(reason, ()):
            if procedure in ("ecg", "chest_xray") and d.chance(probability):
                chart.procedure(procedure, visit, reason=condition)
        self.ed_days.append(day)
        if not admitted:
            self._acute_medication(reason, visit, condition)
            if (
                admit_allowed
                and age >= 18
                and day > self.block_until
                and d.chance(min(0.04 + 0.01 * charlson(self.conditions), 0.2))
            ):
                if d.chance(0.7):
                    self._progress_note(visit, day, emergency="Admitted to inpatient medicine")
                self._admission(day, reason, ed_visit=visit)
                return visit
        if d.chance(0.6):
            self._progress_note(
                visit,
                day,
                emergency="Admitted to inpatient medicine" if admitted else "Discharged home in stable condition",
            )
        return visit

    def _adult_ed_reasons(self, age: float) -> Weighted[str]:
        pairs = [
            ("chestpain", 10.0),
            ("abdpain", 10.0),
            ("sprain", 7.0),
            ("uri", 5.0),
            ("uti", 6.0),
            ("gastroenteritis", 6.0),
            ("backpain", 6.0),
            ("syncope", 4.0 + 0.1 * max(age - 60, 0)),
            ("migraine", 5.0),
            ("cellulitis", 3.0),
            ("pneumonia", 2.0 + 0.1 * max(age - 60, 0)),
        ]
        if "copd" in self.conditions:
            pairs.append(("copd_exacerbation", 12.0))
        if "hf" in self.conditions:
            pairs.append(("chf_exacerbation", 10.0))
        return Weighted(pairs)

    def _admission_reason(self, age: float) -> str:
        c = self.conditions
        pairs = [
            ("pneumonia", 3.0 + 0.05 * max(age - 60, 0)),
            ("sepsis", 1.5 + ("ckd3" in c or "ckd4" in c)),
            ("uti", 1.2),
            ("cellulitis", 1.0),
            ("chestpain", 1.5),
            ("syncope", 0.8),
            ("gi_bleed", 0.6 + ("anticoagulant" in self.meds)),
            ("aki", 0.5 + 2.0 * ("ckd3" in c or "ckd4" in c)),
            ("cholecystitis", 0.6),
        ]
        if age >= 70:
            pairs.append(("hip_fracture", 1.5))
        if age < 50:
            pairs.append(("appendicitis", 0.8))
        if "hf" in c:
            pairs.append(("chf_exacerbation", 5.0))
        if "copd" in c:
            pairs.append(("copd_exacerbation", 5.0))
        return self.d.weighted(Weighted(pairs))

    def _admission_event(self, day: int, payload: tuple[str, str] | None) -> None:
        d = self.d
        if day <= self.block_until:
            if payload is not None:  # an incident MI or stroke still happens, after the blocked period
                later = self.block_until + 1 + d.between(0, 20)
                if later <= self.ctx.window_end:
                    self._push(later, ADMIT, payload)
                else:
                    self.pending.discard(payload[1])
            return
        age = self.age(day)
        if payload is not None:
            reason, new_condition = payload
            self._admission(day, reason, via_ed=True, new_condition=new_condition)
            return
        if age >= 45 and d.chance(0.2):
            elective = "cad" if "cad" in self.conditions and d.chance(0.4) else d.pick(("knee_oa", "cholecystitis"))
            self._admission(day, elective, elective=True)
            return
        self._admission(
            day,
            self._admission_reason(age) if age >= 18 else d.pick(("appendicitis", "pneumonia")),
            via_ed=d.chance(0.7),
        )

    def _length_of_stay(self, reason: str, elective: bool) -> int:
        d = self.d
        if elective:
            return d.between(1, 3)
        stay = 1 + int(d.gamma2(2.0))
        if reason in ("stroke", "hip_fracture", "sepsis"):
            stay += d.between(1, 4)
        return min(stay, 30)

    def _disposition(self, age: float, reason: str, elective: bool) -> str:
        d = self.d
        burden = charlson(self.conditions)
        over65 = max(age - 65.0, 0.0)
        weights = (
            (
                "exp",
                0.0
                if elective
                else min(
                    0.006 + 0.004 * burden + 0.0006 * max(age - 60.0, 0.0) + (0.05 if reason == "sepsis" else 0.0), 0.2
                ),
            ),
            (
                "snf",
                min(0.01 + 0.007 * over65 + 0.02 * burden + (0.25 if reason in ("hip_fracture", "stroke") else 0), 0.5),
            ),
            ("rehab", 0.01 + (0.25 if reason in ("stroke", "hip_fracture", "knee_oa") else 0.0)),
            ("alt-home", 0.08 + 0.003 * max(age - 50.0, 0.0)),
            ("hosp", 0.0 if elective else 0.02),
            ("aadvice", 0.0 if elective else 0.008 + 0.02 * self.housing),
        )
        u = d.u()
        cumulative = 0.0
        for code, weight in weights:
            cumulative += weight
            if u < cumulative:
                return code
        return "home"

    def _admission(
        self,
        day: int,
        reason: str,
        *,
        via_ed: bool = False,
        elective: bool = False,
        ed_visit: Visit | None = None,
        readmission_of: dict[str, Any] | None = None,
        new_condition: str | None = None,
    ) -> None:
        d, chart, ctx = self.d, self.chart, self.ctx
        readmission = readmission_of is not None
        if readmission:
            self.pending_readmission = -1
        if ed_visit is None and (via_ed or (readmission and d.chance(0.8))):
            ed_visit = self._emergency(day, reason, admit_allowed=False)
        if ed_visit is not None:
            subject, person = ed_visit.subject, ed_visit.person
            period_end = ed_visit.resource["period"]["end"]
            start_day, start_minute = ed_visit.end, int(period_end[11:13]) * 60 + int(period_end[14:16])
        else:
            subject, person = self._subject(day)
            start_day, start_minute = day, 420 + 5 * d.between(0, 24)
        age = self.age(start_day)
        stay = self._length_of_stay(reason, elective)
        discharge = min(start_day + stay, ctx.window_end)
        discharge_minute = 600 + 5 * d.between(0, 72)
        if discharge == start_day:
            discharge_minute = max(discharge_minute, start_minute + 180)
        hospital = ed_visit.site if ed_visit is not None else self.hospital
        visit = chart.encounter(
            klass="IMP",
            type_key="admission",
            subject=subject,
            person=person,
            start=start_day,
            start_minute=start_minute,
            end=discharge,
            end_minute=discharge_minute,
            clinician=d.pick(hospital.clinicians),
            site=hospital,
            location="ward",
            priority="EL" if elective else "EM",
            protected=True,
        )
        visit.end = discharge + discharge_minute // 1440
        visit.reason = CONDITIONS[reason].snomed_display
        admitted_with = chart.condition(
            reason, visit, onset=start_day, problem=False, resolved=discharge + d.between(0, 14)
        )
        chart.diagnose(visit, admitted_with, "AD")
        self._vitals(visit, start_day, full=True, acute=reason)
        if age >= 18:
            self._kidney(visit, start_day)
            if "t2d" in self.conditions:
                self._glycaemia(visit, start_day)
        for procedure, probability in _INPATIENT_PROCEDURES.get(reason, ()):
            if d.chance(probability):
                chart.procedure(procedure, visit, reason=admitted_with)
        if new_condition is not None:
            self.conditions[new_condition] = start_day
            problem = self._add_problem(new_condition, visit, start_day, category="discharge")
            chart.diagnose(visit, problem, "DD")
            if new_condition == "mi" and "cad" not in self.conditions:
                self._add_problem("cad", visit, start_day, category="discharge")
        treatment = ACUTE_TREATMENT.get(reason)
        if treatment and treatment[0] == "amoxicillin":
            chart.medication("amoxicillin", visit, reason=admitted_with, category="discharge", days=treatment[1])
        disposition = self._disposition(age, reason, elective)
        chart.hospitalization(
            visit,
            admit_source="emd" if ed_visit is not None else "gp" if elective else "outp",
            disposition=disposition,
            readmission=readmission,
        )
        if d.chance(0.7):
            chart.procedure("med_reconciliation", visit)
        self.in_hospital_until = discharge
        self.block_until = discharge + 30
        self._readmission_truth(
            visit, start_day, start_minute, discharge, discharge_minute, disposition, age, reason, elective
        )
        self.admissions.append(start_day)
        if readmission_of is not None:
            readmission_of["readmission_encounter_id"] = visit.id
            readmission_of["readmission_time"] = self._stamp(start_day, start_minute)
            readmission_of["days_to_readmission"] = start_day - readmission_of["_discharge_day"]
        if d.chance(0.9):
            self._discharge_note(visit, discharge, discharge_minute, disposition, readmission)
        if disposition == "exp":
            self._die(discharge, discharge_minute)

    def _readmission_truth(
        self,
        visit: Visit,
        admit: int,
        admit_minute: int,
        discharge: int,
        discharge_minute: int,
        disposition: str,
        age: float,
        reason: str,
        elective: bool,
    ) -> None:
        d, ctx = self.d, self.ctx
        burden = charlson(self.conditions)
        prior = sum(1 for a in self.admissions if admit - 365 <= a < admit)
        ed_visits = sum(1 for e in self.ed_days if admit - 182 <= e < admit)
        stay = max(discharge - admit, 1)
        active = self._active_count(discharge)
        age_at_discharge = self.age(discharge)
        z = READMISSION.logit(
            age=age_at_discharge,
            charlson=burden,
            prior_admissions=prior,
            ed_visits=ed_visits,
            length_of_stay=stay,
            disposition=disposition,
            active_medications=active,
            housing=self.housing,
            food=self.food,
            transport=self.transport,
        )
        probability = logistic(z)
        exclusion = None
        if disposition == "exp":
            exclusion = "died-in-hospital"
        elif disposition == "hosp":
            exclusion = "transferred"
        elif disposition == "aadvice":
            exclusion = "left-against-advice"
        elif discharge + 30 > ctx.window_end:
            exclusion = "follow-up-incomplete"
        row: dict[str, Any] = {
            "encounter_id": visit.id,
            "patient_id": self.id,
            "subject_id": visit.subject["reference"][8:],
            "admit_time": self._stamp(admit, admit_minute),
            "discharge_time": self._stamp(discharge, discharge_minute),
            "reason": reason,
            "elective": elective,
            "age": round(age_at_discharge, 2),
            "charlson": burden,
            "prior_admissions_12m": prior,
            "ed_visits_6m": ed_visits,
            "length_of_stay_days": stay,
            "discharge_disposition": disposition,
            "active_medications": active,
            "polypharmacy": active >= 5,
            "housing_instability": self.housing,
            "food_insecurity": self.food,
            "transport_barrier": self.transport,
            "linear_predictor": z,
            "probability": probability,
            "eligible": exclusion is None,
            "exclusion": exclusion,
            "outcome": None,
            "readmission_encounter_id": None,
            "readmission_time": None,
            "days_to_readmission": None,
            "_discharge_day": discharge,
        }
        if exclusion is None:
            readmitted = d.u() < probability
            row["outcome"] = int(readmitted)
            if readmitted:
                gap = min(1 + int(d.expo(9.0)), 30)
                self.pending_readmission = discharge + gap
                again = reason if not elective and d.chance(0.45) else self._admission_reason(age_at_discharge)
                self._push(discharge + gap, READMIT, (again, row))
        ctx.truth.readmissions.append(row)
