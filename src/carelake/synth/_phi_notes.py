"""A labelled note corpus for measuring the free-text scrubber, from documents the generator never writes.

The generator's notes (``_notes.py``: progress notes, ED notes, discharge summaries) test that a patient's own
identifiers never survive. To measure recall and precision honestly the scrubber also needs text it was not
tuned on, with every PHI span marked: nursing notes, referral letters, telephone encounters, social-work notes,
radiology reports and medication reconciliations, phrased differently, carrying PHI the record does not tell the
scrubber about (relatives, other clinicians, e-mail, URLs, IPs, VINs, plates, device serials, account and fax
numbers, ages over 89) and padded with PHI-free clinical narrative full of look-alikes (doses, lab values, eponyms,
bare years, ``5/5`` strength, ``Young adult``).

Span conventions (what the scrubber is expected to replace): names without their title or credentials and
without a possessive ``'s``; a whole postal address as one ADDRESS span (state included); an identifier without
its cue word; for an age over 89 only its digits.

    >>> note = phi_notes(1, seed=3)[0]
    >>> all(note.text[s:e] for s, e, _ in note.spans)
    True
"""

from __future__ import annotations

import datetime as dt
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from carelake.synth._people import (
    FAMILY,
    FAMILY_ASIAN,
    FAMILY_HISPANIC,
    GIVEN_FEMALE,
    GIVEN_FEMALE_HISPANIC,
    GIVEN_MALE,
    GIVEN_MALE_HISPANIC,
    PLACES,
    STREET_TYPES,
    STREETS,
)

__all__ = ["LabelledNote", "phi_notes", "token_scores"]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip
_STREET_WORDS = {"St": "Street", "Ave": "Avenue", "Rd": "Road", "Dr": "Drive", "Ln": "Lane", "Blvd": "Boulevard",
                 "Ct": "Court", "Way": "Way", "Pl": "Place"}  # fmt: skip
_FACILITIES = ("Sangamon Valley Hospital", "Riverbend Family Practice", "Central Prairie Imaging",
               "Heartland Home Health", "Kaskaskia Community Pharmacy", "Illini Behavioral Health")  # fmt: skip
_RELATIONS = {"female": ("wife", "daughter", "sister", "mother", "niece", "granddaughter"),
              "male": ("husband", "son", "brother", "father", "nephew", "grandson")}  # fmt: skip
_CREDENTIALS = ("MD", "DO", "NP", "PA-C", "RN", "LCSW", "PharmD")


@dataclass(frozen=True, slots=True)
class LabelledNote:
    """One note, its PHI spans ``(start, end, category)`` and what the record knows about its patient."""

    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    # What the record knows, as keyword arguments of carelake.privacy.Known (synth does not import privacy).
    known: dict[str, tuple[str, ...]] = field(default_factory=dict)


# -- PHI-free narrative ------------------------------------------------------------------------------------------
_PADDING = (
    "Patient tolerated the procedure well without complications.",
    "White blood cells were within normal limits on the morning panel.",
    "WBC 11.2, Hgb 10.9, platelets 245, sodium 138, potassium 4.1, creatinine 1.02.",
    "Vital signs: BP 138/82, HR 88, RR 18, Temp 37.1 C, SpO2 96% on room air.",
    "Continue metoprolol succinate 25 mg by mouth once daily and lisinopril 10 mg daily.",
    "Young adult children are involved in care planning per the patient's wishes.",
    "Diagnosed with type 2 diabetes mellitus in 2011; A1c 7.4% last quarter.",
    "History of Parkinson's disease since 2015 with mild resting tremor.",
    "Foley catheter removed this morning and the patient voided without difficulty.",
    "Holter monitor showed paroxysmal atrial fibrillation with rates up to 130.",
    "Doppler ultrasound of the left leg was negative for deep vein thrombosis.",
    "Glasgow Coma Scale 15; alert and oriented to person, place and time.",
    "Strength 5/5 in all extremities, sensation intact to light touch.",
    "Pain rated 3/10 at rest and 6/10 with ambulation.",
    "INR 2.4 on warfarin 5 mg daily; next INR check in one week.",
    "Eliquis 5 mg twice daily was held for the procedure and resumed afterwards.",
    "Lantus 20 units at bedtime and Humalog sliding scale with meals.",
    "Tylenol 650 mg every 6 hours as needed for pain, not to exceed 3 g per day.",
    "Norco 5/325 one tablet every 6 hours as needed for severe pain.",
    "Will follow up in 2 weeks or sooner if symptoms worsen.",
    "May need physical therapy evaluation for gait instability.",
    "Morse Fall Scale 55; fall precautions in place and bed alarm on.",
    "Braden score 16; turned every 2 hours and heels offloaded.",
    "Lungs with scattered expiratory wheezes, improved after nebulized albuterol.",
    "Abdomen soft, nontender, bowel sounds present in all four quadrants.",
    "Incision clean, dry and intact without erythema or drainage.",
    "Hemoglobin A1c improved from 9.1% in 2019 to 7.4% this year.",
    "Graves' disease treated with radioactive iodine in 2008, now on levothyroxine 100 mcg.",
    "Crohn's disease in remission on adalimumab 40 mg every other week.",
    "No known drug allergies; intolerance to codeine (nausea).",
    "Intake 1,450 mL, output 1,200 mL over the shift.",
    "Blood glucose 182 mg/dL before lunch, 145 mg/dL at bedtime.",
    "Chest X-ray showed no focal consolidation, effusion or pneumothorax.",
    "Echocardiogram in 2020 showed an ejection fraction of 45 to 50 percent.",
    "Uses a walker at home and has grab bars in the bathroom.",
    "Diet: 2 g sodium, carbohydrate controlled, thin liquids.",
    "Influenza vaccine given this season; pneumococcal vaccine up to date.",
    "COVID-19 vaccination series completed with one booster.",
    "Reports poor sleep, about 4 to 5 hours a night, and daytime fatigue.",
    "PHQ-9 score 11, consistent with moderate depressive symptoms.",
    "Denies chest pain, shortness of breath, palpitations or syncope.",
    "Encouraged fluid intake of 1.5 to 2 liters a day unless otherwise directed.",
    "Educated on signs of hypoglycemia and how to treat with 15 g of fast carbohydrate.",
    "Ambulated 150 feet in the hallway with standby assistance.",
    "Skin warm and dry; no pressure injuries noted on full skin assessment.",
    "Oxygen weaned from 3 L to 2 L nasal cannula overnight.",
    "Patient and family verbalized understanding of the plan.",
    "Bell's palsy in 2016 resolved without residual weakness.",
    "Cardiology recommended continuing aspirin 81 mg and atorvastatin 40 mg.",
    "Troponin negative times two; ECG with normal sinus rhythm and no acute changes.",
    "Urinalysis with trace protein, negative nitrites and leukocyte esterase.",
    "TSH 2.1, free T4 1.2, vitamin B12 410, folate normal.",
    "Plan discussed at the interdisciplinary team meeting this morning.",
    "Medication list reviewed line by line against the pharmacy fill history.",
    "Hearing aids in place; speaks English and prefers written instructions.",
    "Smoked one pack a day for 20 years and quit in 2005.",
    "Drinks alcohol socially, about two drinks a week; no drug use.",
    "Goals of care reviewed; remains full code at this time.",
    "Wound vac changed on schedule with 125 mmHg continuous suction.",
    "Physical therapy and occupational therapy to see the patient daily.",
    "MRI of the lumbar spine showed mild degenerative disc disease at L4-L5.",
    "Renal function stable with eGFR 58 and BUN 22.",
    "Gabapentin 300 mg three times daily for neuropathic pain.",
    "Home oxygen at 2 L continuous, concentrator checked and working.",
)

# -- the documents -----------------------------------------------------------------------------------------------
# Fields in braces are filled by _Note.fields(); {pad} marks where PHI-free narrative goes. A line given as a tuple
# is one of its alternatives, drawn per note.
_Line = str | tuple[str, ...]
_TEMPLATES: dict[str, tuple[_Line, ...]] = {
    "nursing": (
        "NURSING SHIFT ASSESSMENT - {facility}",
        (
            "Patient: {pt_full}    DOB {dob}    MRN {mrn}",
            "PATIENT NAME: {PT_FAMILY}, {PT_GIVEN}    MR# {mrn}    DOB: {dob}",
        ),
        "Shift date: {visit}    Unit 4 West, bed 12",
        "",
        (
            "{title} {pt_family} is a {age}-year-old {who} admitted {date2} for {reason}. {pad}",
            "{age} y/o {who} admitted on {date2} with {reason}; {pronoun} prefers to be called {pt_given}. {pad}",
        ),
        (
            "Overnight {pronoun} was restless and asked for {rel_word} {rel_given} several times. {pad}",
            "{Rel_word} {rel_given} at bedside most of the evening. {pad}",
        ),
        (
            "{Rel_word} {rel_full} visited this evening and can be reached at {rel_phone}. {pad}",
            "{rel_full} ({rel_word}) brought in the home medication list; best number {rel_phone}. {pad}",
        ),
        (
            "Report received from {nurse_full}, RN at 19:00. Dr. {doc_family} notified of the glucose of 182 "
            "at 21:40. {pad}",
            "Handoff given to {nurse_full} at 07:00. Paged Dr. {doc_family} about the 182 glucose; no new "
            "orders. {pad}",
        ),
        (
            "Home address on file: {street}, {cityline}. Preferred contact {phone}. {pad}",
            "Lives at {street}; phone {phone}. {pad}",
        ),
        "{pad}",
        (
            "Care plan reviewed with {title} {pt_family}'s {rel_word}. {pad}",
            "Per {rel_given}, {pronoun} was independent at home until {monthyear}. {pad}",
        ),
        "Signed: {nurse2_full}, {nurse2_cred}   {visit_iso}",
    ),
    "referral": (
        "{facility}",
        "{fac_address}",
        ("Phone {fac_phone}    Fax {fax}", "Tel. {fac_phone} | Fax: {fax}"),
        "",
        "{letter_date}",
        "",
        "Dr. {doc_full}",
        "{doc_address}",
        "",
        ("Re: {pt_full}, date of birth {dob}, MRN {mrn}", "RE: {pt_full} (DOB {dob}; medical record number {mrn})"),
        "",
        "Dear Dr. {doc_family},",
        "",
        (
            "Thank you for agreeing to see {title} {pt_family}, a {age}-year-old {who} with {reason}. {pad}",
            "I am writing to refer {pt_full}, aged {age}, for evaluation of {reason}. {pad}",
        ),
        (
            "{Pronoun} was last seen in our office on {short_date} and lives at {street} with {rel_word} "
            "{rel_given}. {pad}",
            "{Pronoun} lives with {pronoun_pos} {rel_word}, {rel_full}, who helps with transportation. {pad}",
        ),
        "{pad}",
        "Insurance: member ID {member}, policy {policy}. Please send your consultation note to fax {fax} or e-mail "
        "{clin_email}. {pad}",
        (
            "The patient can be reached at {phone} or {pt_email}. Records are also available on {url}. {pad}",
            "{pt_given} asked that we call {phone} rather than e-mail; our notes are shared through {url}. {pad}",
        ),
        "Sincerely,",
        "{sender_full}, {sender_cred}",
        ("cc: {pcp_full}, MD", "Copy to primary care: Dr. {pcp_full}"),
    ),
    "telephone": (
        "TELEPHONE ENCOUNTER",
        ("Patient: {pt_family}, {pt_given}    MRN {mrn}    DOB {dob}", "Pt: {pt_full} / {mrn} / {dob}"),
        "Call received: {visit_iso}    Callback number {phone_alt}",
        "",
        (
            "Caller: {rel_full} ({rel_word}), phone {rel_phone}. {pad}",
            "Spoke with {rel_full}, the patient's {rel_word}, at {rel_phone}. {pad}",
        ),
        (
            "{Rel_word} reports that {pt_given} has had {reason} since {date2}. {pad}",
            "{rel_given} says {pronoun} has had {reason} since {date2}. {pad}",
        ),
        "{pad}",
        (
            "Advised to go to the emergency department if symptoms worsen. Appointment booked with {doc_full}, "
            "{doc_cred} on {visit}. {pad}",
            "Scheduled with Dr. {doc_full} for {visit}; advised ED if worse before then. {pad}",
        ),
        "Patient portal message sent from IP address {ip}; login {pt_email}. {pad}",
        "{pad}",
        (
            "Message taken by {nurse_full}, {nurse_cred}. Routed to Dr. {doc_family} for review.",
            "{nurse_full}, {nurse_cred} - forwarded to Dr. {doc_family}.",
        ),
    ),
    "social": (
        "SOCIAL WORK ASSESSMENT",
        ("Client: {pt_full}    MRN: {mrn}    SSN {ssn}", "Name: {pt_family}, {pt_given}    Social Security # {ssn}"),
        "Date of contact: {visit}",
        "",
        (
            "{title} {pt_family} is a {age}-year-old {who} referred for discharge planning after {reason}. {pad}",
            "Met with {pt_given} ({age} yo) at bedside to plan discharge after {reason}. {pad}",
        ),
        (
            "{Pronoun} lives alone at {street}, {cityline}; {rel_word} {rel_full} lives nearby at {rel_address}. {pad}",
            "Home is {street}, {cityline}. {Rel_word} {rel_given} (age {rel_age}) lives at {rel_address}. {pad}",
        ),
        "{pad}",
        (
            "Transportation: drives a 2014 sedan, VIN {vin}, license plate {plate}; driver's license {license}. {pad}",
            "No longer drives; the car (VIN {vin}, plate {plate}) was sold. DL # {license}. {pad}",
        ),
        "Financial: hospital account number {account}; Medicaid application submitted {date2}. {pad}",
        (
            "Emergency contact {rel_given} ({rel_word}), cell {rel_phone}, e-mail {rel_email}. {pad}",
            "{rel_full} is health care proxy; reach at {rel_phone} or {rel_email}. {pad}",
        ),
        "{pad}",
        "Plan reviewed with the patient and with Dr. {doc_family}. Follow-up visit on {date3}.",
        "{sw_full}, LCSW    Phone {sw_phone}",
    ),
    "radiology": (
        "{facility} - DIAGNOSTIC IMAGING REPORT",
        "Patient: {pt_full}   DOB: {dob}   MRN: {mrn}   Accession #{accession}",
        (
            "Exam date: {visit}    Ordering provider: {doc_full}, {doc_cred}",
            "Exam date: {visit}    Referring physician: Dr. {doc_full}",
        ),
        "",
        ("CLINICAL HISTORY: {age}-year-old {who} with {reason}. {pad}", "INDICATION: {reason}, age {age}. {pad}"),
        "COMPARISON: Prior study dated {date2}. {pad}",
        "DEVICE: Dual-chamber pacemaker, serial number {serial}, implanted {monthyear}. {pad}",
        "FINDINGS: {pad}",
        "{pad}",
        ("IMPRESSION: {pad}", "IMPRESSION: Findings discussed by telephone with Dr. {doc_family} on {visit}. {pad}"),
        "Images were sent to workstation {ip} and reviewed remotely.",
        ("Interpreted by: {rad_full}, MD    Signed {visit_iso}", "Electronically signed by {rad_full}, MD on {visit}"),
    ),
    "medrec": (
        "MEDICATION RECONCILIATION",
        ("{pt_full}    DOB {dob}    MRN {mrn}    Phone {phone}", "Patient {pt_full}, born {dob}, MRN {mrn}"),
        "Pharmacy: {facility}, {fac_address}, phone {fac_phone}, fax {fax}",
        "",
        (
            "Reconciliation completed on {visit} with the patient and {rel_word} {rel_given}. {pad}",
            "Reviewed the bottles {rel_full} brought from home on {visit}. {pad}",
        ),
        "{pad}",
        (
            "Prescriber for warfarin is Dr. {doc_full} (NPI {npi}); last refill {date2}, next refill due on "
            "{short_date}. {pad}",
            "Warfarin prescribed by {doc_full}, {doc_cred}, NPI {npi}; filled {date2}. {pad}",
        ),
        (
            "Patient uses the refill site {url} and receives reminders at {pt_email}. {pad}",
            "Refill reminders go to {pt_email}; pharmacy portal {url}. {pad}",
        ),
        "{pad}",
        "Reviewed by {pharm_full}, PharmD on {date3}.",
    ),
}
_REASONS = ("community-acquired pneumonia", "a fall at home", "worsening heart failure", "a COPD exacerbation",
            "cellulitis of the left leg", "uncontrolled type 2 diabetes", "chest pain", "a hip fracture",
            "acute kidney injury", "new atrial fibrillation", "memory concerns", "chronic low back pain")  # fmt: skip


class _Note:
    """One note's cast: the patient, a relative, clinicians, places and identifiers, each with its label."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sex = rng.choice(("female", "male"))
        hispanic = rng.random() < 0.2
        self.given = self._given(self.sex, hispanic)
        self.family = self._family(hispanic)
        self.middle = self._given(self.sex, hispanic) if rng.random() < 0.5 else ""
        self.age = rng.randint(90, 104) if rng.random() < 0.25 else rng.randint(19, 89)
        self.visit_day = dt.date(2018, 1, 1) + dt.timedelta(days=rng.randint(0, 2400))
        self.birth = self.visit_day - dt.timedelta(days=self.age * 365 + rng.randint(5, 360))
        self.city, self.state, zip3, self.area = rng.choice(PLACES.items)
        self.zip = f"{zip3}{rng.randint(1, 99):02d}"
        self.street_type = rng.choice(STREET_TYPES)
        self.street = f"{rng.randint(1, 9899)} {rng.choice(STREETS)} {self.street_type}"
        if rng.random() < 0.2:
            self.street += f" Apt {rng.randint(1, 40)}{rng.choice('ABCD')}"
        self.phone_digits = f"{self.area}555{rng.randint(0, 9999):04d}"
        self.mrn = f"{rng.randint(10_000_000, 99_999_999)}"

    def _given(self, sex: str, hispanic: bool) -> str:
        if sex == "female":
            return self.rng.choice(GIVEN_FEMALE_HISPANIC if hispanic else GIVEN_FEMALE)
        return self.rng.choice(GIVEN_MALE_HISPANIC if hispanic else GIVEN_MALE)

    def _family(self, hispanic: bool) -> str:
        return self.rng.choice(FAMILY_HISPANIC if hispanic else self.rng.choice((FAMILY, FAMILY, FAMILY_ASIAN)))

    def _person(self, sex: str | None = None) -> tuple[str, str]:
        sex = sex or self.rng.choice(("female", "male"))
        return self._given(sex, self.rng.random() < 0.2), self._family(self.rng.random() < 0.2)

    def _date(self, day: dt.date) -> str:
        style = self.rng.randint(0, 9)
        month = _MONTHS[day.month - 1]
        return (
            f"{day.month:02d}/{day.day:02d}/{day.year}",
            f"{day.month}/{day.day}/{day.year % 100:02d}",
            f"{month} {day.day}, {day.year}",
            f"{day.day} {month} {day.year}",
            f"{month[:3]} {day.day} {day.year}",
            day.isoformat(),
            f"{day.month:02d}-{day.day:02d}-{day.year}",
            f"{day.day:02d}-{month[:3]}-{day.year}",
            f"{month[:3]}. {day.day}, {day.year}",
            f"{day.month}/{day.day}/{day.year}",
        )[style]

    def _phone(self, digits: str) -> str:
        a, b, c = digits[:3], digits[3:6], digits[6:]
        return self.rng.choice((f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"({a}){b}-{c}"))

    def _other_phone(self) -> str:
        return self._phone(f"{self.rng.choice(('217', '309', '312', '314', '618'))}555{self.rng.randint(0, 9999):04d}")

    def _address(self) -> str:
        city, state, zip3, _ = self.rng.choice(PLACES.items)
        street = f"{self.rng.randint(1, 9899)} {self.rng.choice(STREETS)} {self.rng.choice(STREET_TYPES)}"
        return f"{street}, {city}, {state} {zip3}{self.rng.randint(1, 99):02d}"

    def _serial(self, letters: int, digits: int, tail: int = 0) -> str:
        pick = self.rng.choice
        upper = "ABCDEFGHJKLMNPRSTUVWXYZ"
        return (
            "".join(pick(upper) for _ in range(letters))
            + "".join(pick(string.digits) for _ in range(digits))
            + "".join(pick(upper) for _ in range(tail))
        )

    def _email(self, given: str, family: str, domain: str) -> str:
        local = "".join(ch for ch in f"{given}.{family}".lower() if ch.isalpha() or ch == ".")
        return f"{local}{self.rng.randint(1, 99)}@{domain}"

    def fields(self) -> dict[str, tuple[str, str | None]]:
        """Every template field: its text and its category (``None`` for text that is not PHI)."""
        rng = self.rng
        female = self.sex == "female"
        rel_sex = rng.choice(("female", "male"))
        rel_given, rel_family = self._person(rel_sex)
        rel_word = rng.choice(_RELATIONS[rel_sex])
        shown_street = self.street
        if rng.random() < 0.3:  # notes spell out what the record abbreviates
            number, name, kind, *rest = self.street.split(" ")
            shown_street = " ".join([number, name, _STREET_WORDS.get(kind, kind), *rest])
        years = rng.choice((rng.randint(40, 88), rng.randint(90, 99)))
        people = {key: self._person() for key in ("doc", "nurse", "nurse2", "sender", "sw", "rad", "pharm")}
        day = self.visit_day
        return {
            "pt_full": (f"{self.given} {self.family}", "NAME"),
            "pt_given": (self.given, "NAME"),
            "pt_family": (self.family, "NAME"),
            "PT_GIVEN": (self.given.upper(), "NAME"),
            "PT_FAMILY": (self.family.upper(), "NAME"),
            "pronoun_pos": ("her" if female else "his", None),
            "pcp_full": (" ".join(self._person()), "NAME"),
            "title": ("Ms." if female else "Mr.", None),
            "who": ("woman" if female else "man", None),
            "pronoun": ("she" if female else "he", None),
            "Pronoun": ("She" if female else "He", None),
            "age": (str(self.age), "AGE90" if self.age > 89 else None),
            "dob": (self._date(self.birth), "DATE"),
            "mrn": (self.mrn, "ID"),
            "phone": (self._phone(self.phone_digits), "PHONE"),
            "phone_alt": (self._phone(self.phone_digits), "PHONE"),
            "street": (shown_street, "ADDRESS"),
            "cityline": (f"{self.city}, {self.state} {self.zip}", "ADDRESS"),
            "visit": (self._date(day), "DATE"),
            "visit_iso": (f"{day.isoformat()}T{rng.randint(7, 19):02d}:{rng.randint(0, 59):02d}:00Z", "DATE"),
            "letter_date": (self._date(day - dt.timedelta(days=rng.randint(1, 9))), "DATE"),
            "date2": (self._date(day - dt.timedelta(days=rng.randint(2, 400))), "DATE"),
            "date3": (self._date(day + dt.timedelta(days=rng.randint(1, 60))), "DATE"),
            "short_date": (f"{(day + dt.timedelta(days=20)).month}/{(day + dt.timedelta(days=20)).day}", "DATE"),
            "monthyear": (f"{_MONTHS[(day.month + 3) % 12]} {day.year - rng.randint(1, 6)}", "DATE"),
            "reason": (rng.choice(_REASONS), None),
            "rel_word": (rel_word, None),
            "Rel_word": (rel_word.capitalize(), None),
            "rel_given": (rel_given, "NAME"),
            "rel_full": (f"{rel_given} {rel_family}", "NAME"),
            "rel_phone": (self._other_phone(), "PHONE"),
            "rel_age": (str(years), "AGE90" if years > 89 else None),
            "rel_address": (self._address(), "ADDRESS"),
            "rel_email": (self._email(rel_given, rel_family, "example.net"), "EMAIL"),
            "doc_full": (" ".join(people["doc"]), "NAME"),
            "doc_family": (people["doc"][1], "NAME"),
            "doc_cred": (rng.choice(("MD", "DO")), None),
            "doc_address": (self._address(), "ADDRESS"),
            "nurse_full": (" ".join(people["nurse"]), "NAME"),
            "nurse_cred": (rng.choice(("RN", "LPN", "NP")), None),
            "nurse2_full": (f"{people['nurse2'][0]} {rng.choice('ABCDEJKLMRST')}. {people['nurse2'][1]}", "NAME"),
            "nurse2_cred": (rng.choice(("RN", "BSN", "LPN")), None),
            "sender_full": (" ".join(people["sender"]), "NAME"),
            "sender_cred": (rng.choice(_CREDENTIALS[:4]), None),
            "sw_full": (" ".join(people["sw"]), "NAME"),
            "sw_phone": (self._other_phone(), "PHONE"),
            "rad_full": (" ".join(people["rad"]), "NAME"),
            "pharm_full": (" ".join(people["pharm"]), "NAME"),
            "clin_email": (self._email(*people["doc"], "clinic.example.org"), "EMAIL"),
            "pt_email": (self._email(self.given, self.family, "example.com"), "EMAIL"),
            "facility": (rng.choice(_FACILITIES), None),
            "fac_address": (self._address(), "ADDRESS"),
            "fac_phone": (self._other_phone(), "PHONE"),
            "fax": (self._other_phone(), "PHONE"),
            "member": (self._serial(1, 9), "ID"),
            "policy": (f"{self._serial(3, 0)}-{rng.randint(100000, 999999)}", "ID"),
            "ssn": (f"{rng.randint(900, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}", "ID"),
            "vin": (self._serial(1, 1) + self._serial(3, 2) + self._serial(1, 9), "ID"),  # 17 characters
            "plate": (f"{self._serial(3, 0)}-{rng.randint(1000, 9999)}", "ID"),
            "license": (self._serial(1, 11), "ID"),
            "account": (f"{rng.randint(1_000_000, 9_999_999)}{rng.randint(10, 99)}", "ID"),
            "accession": (f"{self._serial(2, 8)}", "ID"),
            "serial": (self._serial(3, 6, 1), "ID"),
            "npi": (f"1{rng.randint(100_000_000, 999_999_999)}", "ID"),
            "url": (f"https://portal.example.org/patients/{rng.randint(100000, 999999)}", "URL"),
            "ip": (f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "IP"),
        }

    def known(self) -> dict[str, tuple[str, ...]]:
        names = [self.given, self.family, f"{self.given} {self.family}", f"{self.family}, {self.given}"]
        if self.middle:
            names.insert(1, self.middle)
        return {
            "names": tuple(names),
            "identifiers": (self.mrn,),
            "phones": (self._phone(self.phone_digits),),
            "addresses": (self.street,),
            "dates": (self.birth.isoformat(),),
        }


def _render(
    rng: random.Random, lines: tuple[_Line, ...], values: dict[str, tuple[str, str | None]], words: int
) -> tuple[str, list[tuple[int, int, str]]]:
    """Fill a template, recording each PHI field's span; {pad} slots share ``words`` minus the template's words."""
    formatter = string.Formatter()
    template = [line if isinstance(line, str) else rng.choice(line) for line in lines]
    pads = sum(line.count("{pad}") for line in template)
    base = sum(len(literal.split()) + (len(values[name][0].split()) if name and name != "pad" else 0)
               for line in template for literal, name, _, _ in formatter.parse(line))  # fmt: skip
    budget = max(words - base, 0)
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < budget:
        sentences += rng.sample(_PADDING, len(_PADDING))
    # Split the sentences over the pad slots, in order, about equally by word count.
    per_slot = budget / max(pads, 1)
    slots: list[list[str]] = [[] for _ in range(max(pads, 1))]
    count, slot = 0, 0
    for sentence in sentences:
        if count >= budget:
            break
        slots[min(slot, len(slots) - 1)].append(sentence)
        count += len(sentence.split())
        if count >= per_slot * (slot + 1):
            slot += 1
    parts: list[str] = []
    spans: list[tuple[int, int, str]] = []
    length, pad_index = 0, 0
    for number, line in enumerate(template):
        for literal, name, _, _ in formatter.parse(line):
            parts.append(literal)
            length += len(literal)
            if name is None:
                continue
            if name == "pad":
                text = " ".join(slots[pad_index]) if pad_index < len(slots) else ""
                pad_index += 1
                category = None
            else:
                text, category = values[name]
            if category is not None:
                spans.append((length, length + len(text), category))
            parts.append(text)
            length += len(text)
        if number < len(template) - 1:
            parts.append("\n")
            length += 1
    return "".join(parts), spans


def phi_notes(n: int, *, seed: int = 0, words: int = 500) -> list[LabelledNote]:
    """``n`` labelled notes of about ``words`` words each, the same for the same seed.

    Examples:
        >>> [len(note.text.split()) > 400 for note in phi_notes(2, seed=1)]
        [True, True]
    """
    rng = random.Random(seed)
    kinds = sorted(_TEMPLATES)
    notes = []
    for index in range(n):
        cast = _Note(rng)
        text, spans = _render(rng, _TEMPLATES[kinds[index % len(kinds)]], cast.fields(), words)
        notes.append(LabelledNote(text=text, spans=spans, known=cast.known()))
    return notes


def token_scores(
    notes: Sequence[LabelledNote], spans_of: Callable[[LabelledNote], list[tuple[int, int, str]]]
) -> dict[str, dict[str, float]]:
    """Token-level recall and precision per category (and ``ALL``) of the spans a scrubber replaced.

    Tokens are runs of non-space characters. A token overlapping a labelled span is a PHI token of that span's
    category; it is recalled when every labelled character in it lies inside a replaced span. A token overlapping
    a replaced span counts for the category of that span, and is correct when it is a PHI token of any category
    (precision measures over-scrubbing; which tag a true identifier gets is secondary).
    """
    counts: Counter[tuple[str, str]] = Counter()
    for note in notes:
        predicted = sorted(spans_of(note))
        labelled = sorted(note.spans)
        g = p = 0  # spans ending at or before the current token are behind these (neither list overlaps itself)
        for token in re.finditer(r"\S+", note.text):
            start, end = token.span()
            while g < len(labelled) and labelled[g][1] <= start:
                g += 1
            while p < len(predicted) and predicted[p][1] <= start:
                p += 1
            gold = _starting_before(labelled, g, end)
            hits = _starting_before(predicted, p, end)
            if gold:
                category = max(gold, key=lambda x: min(x[1], end) - max(x[0], start))[2]
                counts[category, "phi"] += 1
                covered = all(
                    any(ps <= i < pe for ps, pe, _ in hits)
                    for s, e, _ in gold
                    for i in range(max(s, start), min(e, end))
                )
                counts[category, "recalled"] += covered
            if hits:
                category = max(hits, key=lambda x: min(x[1], end) - max(x[0], start))[2]
                counts[category, "replaced"] += 1
                counts[category, "correct"] += bool(gold)
    categories = sorted({c for c, _ in counts})
    scores: dict[str, dict[str, float]] = {}
    for category in [*categories, "ALL"]:
        pick = categories if category == "ALL" else [category]
        phi = sum(counts[c, "phi"] for c in pick)
        replaced = sum(counts[c, "replaced"] for c in pick)
        scores[category] = {
            "phi_tokens": phi,
            "replaced_tokens": replaced,
            "recall": sum(counts[c, "recalled"] for c in pick) / phi if phi else 1.0,
            "precision": sum(counts[c, "correct"] for c in pick) / replaced if replaced else 1.0,
        }
    return scores


def _starting_before(spans: list[tuple[int, int, str]], first: int, end: int) -> list[tuple[int, int, str]]:
    found = []
    for span in spans[first:]:
        if span[0] >= end:
            break
        found.append(span)
    return found
