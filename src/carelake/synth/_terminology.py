"""Code systems and the coded concepts the generator uses, kept in one table so docs and tests can check them.

Every code here is a real code of its system (SNOMED CT, ICD-10-CM, LOINC, RxNorm, CVX, HL7 terminology);
displays are the common print names. The dictionaries built from them are shared between resources and must
never be mutated (faults replace them instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
NPI = "http://hl7.org/fhir/sid/us-npi"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
OMB_RACE = "urn:oid:2.16.840.1.113883.6.238"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0092 = "http://terminology.hl7.org/CodeSystem/v2-0092"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
DISCHARGE_DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
ADMIT_SOURCE = "http://terminology.hl7.org/CodeSystem/admit-source"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
MED_REQUEST_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
US_CORE_CAREPLAN = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
US_CORE_DOCREF = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
SDOHCC = "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes"
BCP47 = "urn:ietf:bcp:47"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
US_CORE_BIRTHSEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"

MRN_SYSTEM = "http://hospital.example.org/mrn"
SECOND_MRN_SYSTEM = "http://clinic.example.org/mrn"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    """One Coding; shared, never mutated."""
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    """A CodeableConcept with one coding and the display as text."""
    return {"coding": [coding(system, code, display)], "text": display}


def category(system: str, code: str, display: str) -> dict[str, Any]:
    """A CodeableConcept with one coding and no text (categories and statuses: the coding says it all)."""
    return {"coding": [coding(system, code, display)]}


# ---------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class ConditionCode:
    """A condition coded in SNOMED CT and ICD-10-CM, with its Charlson-type comorbidity group."""

    key: str
    snomed: str
    snomed_display: str
    icd10: str
    icd10_display: str
    charlson_group: str | None = None

    @property
    def code(self) -> dict[str, Any]:
        return _CONDITION_CONCEPTS[self.key]


CONDITIONS: dict[str, ConditionCode] = {
    c.key: c
    for c in (
        # chronic
        ConditionCode("htn", "59621000", "Essential hypertension", "I10", "Essential (primary) hypertension"),
        ConditionCode(
            "t2d",
            "44054006",
            "Diabetes mellitus type 2",
            "E11.9",
            "Type 2 diabetes mellitus without complications",
            "diabetes",
        ),
        ConditionCode("prediabetes", "15777000", "Prediabetes", "R73.03", "Prediabetes"),
        ConditionCode("hld", "55822004", "Hyperlipidemia", "E78.5", "Hyperlipidemia, unspecified"),
        ConditionCode("obesity", "414916001", "Obesity", "E66.9", "Obesity, unspecified"),
        ConditionCode(
            "ckd3",
            "433144002",
            "Chronic kidney disease stage 3",
            "N18.30",
            "Chronic kidney disease, stage 3 unspecified",
            "renal",
        ),
        ConditionCode(
            "ckd4",
            "431857002",
            "Chronic kidney disease stage 4",
            "N18.4",
            "Chronic kidney disease, stage 4 (severe)",
            "renal",
        ),
        ConditionCode(
            "copd",
            "13645005",
            "Chronic obstructive lung disease",
            "J44.9",
            "Chronic obstructive pulmonary disease, unspecified",
            "pulmonary",
        ),
        ConditionCode("asthma", "195967001", "Asthma", "J45.909", "Unspecified asthma, uncomplicated", "pulmonary"),
        ConditionCode("hf", "84114007", "Heart failure", "I50.9", "Heart failure, unspecified", "chf"),
        ConditionCode(
            "cad",
            "53741008",
            "Coronary arteriosclerosis",
            "I25.10",
            "Atherosclerotic heart disease of native coronary artery without angina pectoris",
        ),
        ConditionCode(
            "mi", "399211009", "History of myocardial infarction", "I25.2", "Old myocardial infarction", "mi"
        ),
        ConditionCode("afib", "49436004", "Atrial fibrillation", "I48.91", "Unspecified atrial fibrillation"),
        ConditionCode(
            "stroke",
            "230690007",
            "Cerebrovascular accident",
            "I63.9",
            "Cerebral infarction, unspecified",
            "cerebrovascular",
        ),
        ConditionCode(
            "dementia",
            "52448006",
            "Dementia",
            "F03.90",
            "Unspecified dementia without behavioral disturbance",
            "dementia",
        ),
        ConditionCode(
            "depression",
            "370143000",
            "Major depressive disorder",
            "F32.9",
            "Major depressive disorder, single episode, unspecified",
        ),
        ConditionCode(
            "cancer",
            "363406005",
            "Malignant neoplasm of colon",
            "C18.9",
            "Malignant neoplasm of colon, unspecified",
            "malignancy",
        ),
        ConditionCode(
            "cancer_breast",
            "254837009",
            "Malignant neoplasm of breast",
            "C50.919",
            "Malignant neoplasm of unspecified site of unspecified female breast",
            "malignancy",
        ),
        ConditionCode(
            "cancer_prostate",
            "399068003",
            "Malignant tumor of prostate",
            "C61",
            "Malignant neoplasm of prostate",
            "malignancy",
        ),
        ConditionCode(
            "cancer_lung",
            "363358000",
            "Malignant tumor of lung",
            "C34.90",
            "Malignant neoplasm of unspecified part of unspecified bronchus or lung",
            "malignancy",
        ),
        # acute, recorded as encounter diagnoses
        ConditionCode(
            "uri", "54150009", "Upper respiratory infection", "J06.9", "Acute upper respiratory infection, unspecified"
        ),
        ConditionCode("bronchitis", "10509002", "Acute bronchitis", "J20.9", "Acute bronchitis, unspecified"),
        ConditionCode("sinusitis", "444814009", "Viral sinusitis", "J01.90", "Acute sinusitis, unspecified"),
        ConditionCode("otitis", "65363002", "Otitis media", "H66.90", "Otitis media, unspecified, unspecified ear"),
        ConditionCode("backpain", "161891005", "Backache", "M54.9", "Dorsalgia, unspecified"),
        ConditionCode(
            "sprain",
            "44465007",
            "Sprain of ankle",
            "S93.409A",
            "Sprain of unspecified ligament of unspecified ankle, initial encounter",
        ),
        ConditionCode(
            "uti",
            "68566005",
            "Urinary tract infectious disease",
            "N39.0",
            "Urinary tract infection, site not specified",
        ),
        ConditionCode(
            "gastroenteritis",
            "25374005",
            "Gastroenteritis",
            "K52.9",
            "Noninfective gastroenteritis and colitis, unspecified",
        ),
        ConditionCode("chestpain", "29857009", "Chest pain", "R07.9", "Chest pain, unspecified"),
        ConditionCode("syncope", "271594007", "Syncope", "R55", "Syncope and collapse"),
        ConditionCode("abdpain", "21522001", "Abdominal pain", "R10.9", "Unspecified abdominal pain"),
        ConditionCode(
            "migraine",
            "37796009",
            "Migraine",
            "G43.909",
            "Migraine, unspecified, not intractable, without status migrainosus",
        ),
        ConditionCode("pneumonia", "233604007", "Pneumonia", "J18.9", "Pneumonia, unspecified organism"),
        ConditionCode("sepsis", "91302008", "Sepsis", "A41.9", "Sepsis, unspecified organism"),
        ConditionCode(
            "chf_exacerbation", "42343007", "Congestive heart failure", "I50.9", "Heart failure, unspecified"
        ),
        ConditionCode(
            "copd_exacerbation",
            "195951007",
            "Acute exacerbation of chronic obstructive airways disease",
            "J44.1",
            "Chronic obstructive pulmonary disease with (acute) exacerbation",
        ),
        ConditionCode("ami", "22298006", "Myocardial infarction", "I21.9", "Acute myocardial infarction, unspecified"),
        ConditionCode(
            "hip_fracture",
            "5913000",
            "Fracture of neck of femur",
            "S72.009A",
            "Fracture of unspecified part of neck of unspecified femur, initial encounter",
        ),
        ConditionCode("cellulitis", "128045006", "Cellulitis", "L03.90", "Cellulitis, unspecified"),
        ConditionCode("aki", "14669001", "Acute renal failure syndrome", "N17.9", "Acute kidney failure, unspecified"),
        ConditionCode(
            "gi_bleed", "74474003", "Gastrointestinal hemorrhage", "K92.2", "Gastrointestinal hemorrhage, unspecified"
        ),
        ConditionCode("appendicitis", "74400008", "Appendicitis", "K37", "Unspecified appendicitis"),
        ConditionCode("cholecystitis", "76581006", "Cholecystitis", "K81.9", "Cholecystitis, unspecified"),
        ConditionCode("knee_oa", "239873007", "Osteoarthritis of knee", "M17.9", "Osteoarthritis of knee, unspecified"),
    )
}

_CONDITION_CONCEPTS: dict[str, dict[str, Any]] = {
    c.key: {
        "coding": [coding(SNOMED, c.snomed, c.snomed_display), coding(ICD10CM, c.icd10, c.icd10_display)],
        "text": c.snomed_display,
    }
    for c in CONDITIONS.values()
}

CHRONIC = (
    "htn",
    "t2d",
    "hld",
    "ckd3",
    "copd",
    "asthma",
    "hf",
    "cad",
    "mi",
    "afib",
    "stroke",
    "dementia",
    "depression",
    "cancer",
)

CONDITION_CATEGORY_PROBLEM = [category(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")]
CONDITION_CATEGORY_ENCOUNTER = [category(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")]
CLINICAL_ACTIVE = category(CONDITION_CLINICAL, "active", "Active")
CLINICAL_RESOLVED = category(CONDITION_CLINICAL, "resolved", "Resolved")
VERIFICATION_CONFIRMED = category(CONDITION_VERIFICATION, "confirmed", "Confirmed")

# ---------------------------------------------------------------- observations


@dataclass(frozen=True, slots=True)
class QuantityCode:
    """A LOINC-coded numeric observation with its UCUM unit, rounding and the range a real value stays in."""

    key: str
    loinc: str
    display: str
    unit: str
    decimals: int
    category: str
    plausible: tuple[float, float]
    normal: tuple[float, float] | None = None
    extra_loinc: tuple[str, str] | None = None


QUANTITIES: dict[str, QuantityCode] = {
    q.key: q
    for q in (
        QuantityCode("heart_rate", "8867-4", "Heart rate", "/min", 0, "vital-signs", (20, 250)),
        QuantityCode("resp_rate", "9279-1", "Respiratory rate", "/min", 0, "vital-signs", (4, 60)),
        QuantityCode("temperature", "8310-5", "Body temperature", "Cel", 1, "vital-signs", (30, 43)),
        QuantityCode("weight", "29463-7", "Body weight", "kg", 1, "vital-signs", (0.5, 350)),
        QuantityCode("height", "8302-2", "Body height", "cm", 1, "vital-signs", (30, 230)),
        QuantityCode("bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 1, "vital-signs", (8, 90)),
        QuantityCode(
            "spo2",
            "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry",
            "%",
            0,
            "vital-signs",
            (50, 100),
            extra_loinc=("2708-6", "Oxygen saturation in Arterial blood"),
        ),
        QuantityCode(
            "hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 1, "laboratory", (3, 20), (4.0, 5.6)
        ),
        QuantityCode(
            "glucose",
            "1558-6",
            "Fasting glucose [Mass/volume] in Serum or Plasma",
            "mg/dL",
            0,
            "laboratory",
            (20, 1000),
            (70, 99),
        ),
        QuantityCode(
            "cholesterol",
            "2093-3",
            "Cholesterol [Mass/volume] in Serum or Plasma",
            "mg/dL",
            0,
            "laboratory",
            (50, 600),
            (0, 200),
        ),
        QuantityCode(
            "hdl",
            "2085-9",
            "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
            "mg/dL",
            0,
            "laboratory",
            (5, 200),
            (40, 200),
        ),
        QuantityCode(
            "ldl",
            "18262-6",
            "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
            "mg/dL",
            0,
            "laboratory",
            (10, 500),
            (0, 100),
        ),
        QuantityCode(
            "triglycerides",
            "2571-8",
            "Triglyceride [Mass/volume] in Serum or Plasma",
            "mg/dL",
            0,
            "laboratory",
            (10, 3000),
            (0, 150),
        ),
        QuantityCode(
            "creatinine",
            "2160-0",
            "Creatinine [Mass/volume] in Serum or Plasma",
            "mg/dL",
            2,
            "laboratory",
            (0.1, 20),
            (0.6, 1.3),
        ),
        QuantityCode(
            "egfr",
            "62238-1",
            "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
            "Blood by Creatinine-based formula (CKD-EPI)",
            "mL/min/{1.73_m2}",
            0,
            "laboratory",
            (2, 200),
            (60, 200),
        ),
        QuantityCode(
            "activity", "89574-8", "Physical activity [Minutes/week]", "min/wk", 0, "social-history", (0, 2000)
        ),
    )
}

BLOOD_PRESSURE = {
    "panel": ("85354-9", "Blood pressure panel with all children optional"),
    "systolic": ("8480-6", "Systolic blood pressure"),
    "diastolic": ("8462-4", "Diastolic blood pressure"),
    "plausible_systolic": (50, 260),
    "plausible_diastolic": (20, 160),
}

OBS_CATEGORIES: dict[str, list[dict[str, Any]]] = {
    "vital-signs": [category(OBS_CATEGORY, "vital-signs", "Vital Signs")],
    "laboratory": [category(OBS_CATEGORY, "laboratory", "Laboratory")],
    "social-history": [category(OBS_CATEGORY, "social-history", "Social History")],
    "survey": [category(OBS_CATEGORY, "survey", "Survey"), category(US_CORE_CATEGORY, "sdoh", "SDOH")],
}

SMOKING_STATUS = ("72166-2", "Tobacco smoking status")
SMOKING_ANSWERS = {
    "current": ("449868002", "Current every day smoker"),
    "some-days": ("428041000124106", "Current some day smoker"),
    "former": ("8517006", "Ex-smoker"),
    "never": ("266919005", "Never smoked tobacco"),
}

# Accountable Health Communities health-related social needs screening (AHC HRSN), LOINC panel 96777-8.
HRSN_HOUSING = ("71802-3", "Housing status")
HRSN_HOUSING_ANSWERS = {
    "steady": ("LA31993-1", "I have a steady place to live"),
    "worried": ("LA31994-9", "I have a place to live today, but I am worried about losing it in the future"),
    "none": ("LA31995-6", "I do not have a steady place to live"),
}
HRSN_FOOD_WORRY = (
    "88122-7",
    "Within the past 12 months we worried whether our food would run out before we got money to buy more [U.S. FSS]",
)
HRSN_FOOD_RAN_OUT = (
    "88123-5",
    "Within the past 12 months the food we bought just didn't last and we didn't have money to get more [U.S. FSS]",
)
HRSN_FOOD_ANSWERS = {
    "often": ("LA28397-0", "Often true"),
    "sometimes": ("LA6729-3", "Sometimes true"),
    "never": ("LA28398-8", "Never true"),
}
HRSN_TRANSPORT = (
    "93030-5",
    "Has lack of transportation kept you from medical appointments, meetings, work, or "
    "from getting things needed for daily living",
)
HRSN_YES_NO = {"yes": ("LA33-6", "Yes"), "no": ("LA32-8", "No")}

# ---------------------------------------------------------------- medications (RxNorm clinical drugs)


@dataclass(frozen=True, slots=True)
class Medication:
    """An RxNorm clinical drug with a plain-language sig."""

    key: str
    rxnorm: str
    display: str
    sig: str
    per_day: int = 1

    @property
    def code(self) -> dict[str, Any]:
        return _MED_CONCEPTS[self.key]


MEDICATIONS: dict[str, Medication] = {
    m.key: m
    for m in (
        Medication(
            "metformin",
            "860975",
            "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet",
            "Take 1 tablet by mouth daily with the evening meal",
        ),
        Medication(
            "insulin",
            "106892",
            "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension [Humulin]",
            "Inject 20 units under the skin twice daily",
            2,
        ),
        Medication("lisinopril", "314076", "lisinopril 10 MG Oral Tablet", "Take 1 tablet by mouth daily"),
        Medication("amlodipine", "197361", "amlodipine 5 MG Oral Tablet", "Take 1 tablet by mouth daily"),
        Medication("hctz", "310798", "Hydrochlorothiazide 25 MG Oral Tablet", "Take 1 tablet by mouth every morning"),
        Medication("atorvastatin", "259255", "atorvastatin 80 MG Oral Tablet", "Take 1 tablet by mouth at bedtime"),
        Medication("simvastatin", "314231", "Simvastatin 10 MG Oral Tablet", "Take 1 tablet by mouth at bedtime"),
        Medication("furosemide", "313988", "Furosemide 40 MG Oral Tablet", "Take 1 tablet by mouth every morning"),
        Medication(
            "metoprolol",
            "866412",
            "24 HR metoprolol succinate 100 MG Extended Release Oral Tablet",
            "Take 1 tablet by mouth daily",
        ),
        Medication("aspirin", "243670", "aspirin 81 MG Oral Tablet", "Take 1 tablet by mouth daily"),
        Medication(
            "warfarin",
            "855332",
            "warfarin sodium 5 MG Oral Tablet",
            "Take 1 tablet by mouth daily or as directed by the anticoagulation clinic",
        ),
        Medication("apixaban", "1364445", "apixaban 5 MG Oral Tablet", "Take 1 tablet by mouth twice daily", 2),
        Medication(
            "albuterol",
            "745679",
            "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            "Inhale 2 puffs every 4 to 6 hours as needed for wheezing",
        ),
        Medication(
            "fluticasone",
            "895994",
            "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
            "Inhale 2 puffs twice daily; rinse mouth after use",
            2,
        ),
        Medication("sertraline", "312941", "sertraline 50 MG Oral Tablet", "Take 1 tablet by mouth daily"),
        Medication(
            "amoxicillin",
            "308192",
            "amoxicillin 500 MG Oral Tablet",
            "Take 1 tablet by mouth three times daily for 10 days",
            3,
        ),
        Medication(
            "acetaminophen",
            "313782",
            "acetaminophen 325 MG Oral Tablet",
            "Take 2 tablets by mouth every 6 hours as needed for pain or fever",
        ),
        Medication(
            "ibuprofen",
            "310965",
            "ibuprofen 200 MG Oral Tablet",
            "Take 2 tablets by mouth every 6 hours as needed for pain",
        ),
    )
}
_MED_CONCEPTS = {m.key: concept(RXNORM, m.rxnorm, m.display) for m in MEDICATIONS.values()}

MED_CATEGORY = {
    "outpatient": [category(MED_REQUEST_CATEGORY, "outpatient", "Outpatient")],
    "discharge": [category(MED_REQUEST_CATEGORY, "discharge", "Discharge")],
    "community": [category(MED_REQUEST_CATEGORY, "community", "Community")],
}

# ---------------------------------------------------------------- procedures, vaccines, allergies, plans

PROCEDURES: dict[str, tuple[str, str]] = {
    "ecg": ("29303009", "Electrocardiographic procedure"),
    "chest_xray": ("399208008", "Plain chest X-ray"),
    "echo": ("40701008", "Echocardiography"),
    "pci": ("415070008", "Percutaneous coronary intervention"),
    "cabg": ("232717009", "Coronary artery bypass grafting"),
    "knee_replacement": ("609588000", "Total knee replacement"),
    "hip_replacement": ("52734007", "Total replacement of hip"),
    "appendectomy": ("80146002", "Appendectomy"),
    "cholecystectomy": ("38102005", "Cholecystectomy"),
    "colonoscopy": ("73761001", "Colonoscopy"),
    "mammography": ("24623002", "Screening mammography"),
    "depression_screening": ("171207006", "Depression screening"),
    "med_reconciliation": ("430193006", "Medication reconciliation"),
    "sdoh_assessment": ("710824005", "Assessment of health and social care needs"),
    "spirometry": ("127783003", "Spirometry"),
}
PROCEDURE_CODES = {key: concept(SNOMED, code, display) for key, (code, display) in PROCEDURES.items()}

VACCINES: dict[str, tuple[str, str]] = {
    "flu": ("140", "Influenza, seasonal, injectable, preservative free"),
    "tdap": ("115", "Tdap"),
    "td": ("113", "Td (adult) preservative free"),
    "pcv13": ("133", "Pneumococcal conjugate PCV 13"),
    "ppsv23": ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
    "zoster": ("187", "zoster vaccine recombinant"),
    "covid": ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
    "hpv": ("165", "Human Papillomavirus 9-valent vaccine"),
    "hepb": ("08", "Hep B, adolescent or pediatric"),
    "mmr": ("03", "MMR"),
    "varicella": ("21", "varicella"),
    "dtap": ("20", "DTaP"),
    "ipv": ("10", "IPV"),
    "hib": ("49", "Hib (PRP-OMP)"),
    "mening": ("114", "meningococcal MCV4P"),
    "hepa": ("83", "Hep A, ped/adol, 2 dose"),
}
VACCINE_CODES = {key: concept(CVX, code, display) for key, (code, display) in VACCINES.items()}

# (key, SNOMED code, display, category, criticality, reaction SNOMED code, reaction display)
ALLERGIES: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("penicillin", "91936005", "Allergy to penicillin", "medication", "high", "271807003", "Eruption of skin"),
    ("peanut", "91935009", "Allergy to peanuts", "food", "high", "39579001", "Anaphylaxis"),
    ("shellfish", "300913006", "Shellfish allergy", "food", "high", "247472004", "Wheal"),
    ("dust_mite", "232350006", "House dust mite allergy", "environment", "low", "267036007", "Dyspnea"),
    ("grass_pollen", "418689008", "Allergy to grass pollen", "environment", "low", "267036007", "Dyspnea"),
    ("latex", "300916003", "Latex allergy", "environment", "low", "271807003", "Eruption of skin"),
    ("bee_venom", "424213003", "Allergy to bee venom", "environment", "high", "39579001", "Anaphylaxis"),
)
ALLERGY_CLINICAL_ACTIVE = category(ALLERGY_CLINICAL, "active", "Active")
ALLERGY_CONFIRMED = category(ALLERGY_VERIFICATION, "confirmed", "Confirmed")

# condition key -> (plan SNOMED code, display, activity codes)
CARE_PLANS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "t2d": (
        "698360004",
        "Diabetes self management plan",
        (("160670007", "Diabetic diet"), ("229065009", "Exercise therapy")),
    ),
    "htn": (
        "443402002",
        "Lifestyle education regarding hypertension",
        (("226234005", "Healthy diet"), ("229065009", "Exercise therapy")),
    ),
    "copd": (
        "412776001",
        "Chronic obstructive pulmonary disease clinical management plan",
        (("15081005", "Pulmonary rehabilitation"), ("710081004", "Smoking cessation therapy")),
    ),
    "hf": (
        "735984001",
        "Heart failure self management plan",
        (("226234005", "Healthy diet"), ("229065009", "Exercise therapy")),
    ),
    "asthma": ("699728000", "Asthma self management", (("710081004", "Smoking cessation therapy"),)),
}
CAREPLAN_ASSESS = category(US_CORE_CAREPLAN, "assess-plan", "Assessment and Plan of Treatment")

# Social-care referrals for positive AHC HRSN screens (Gravity Project / SDOH Clinical Care value sets).
SOCIAL_REFERRALS: dict[str, tuple[str, str, str, str]] = {
    "housing": ("710911006", "Referral to housing service", "housing-instability", "Housing Instability"),
    "food": ("713109004", "Referral to community meals service", "food-insecurity", "Food Insecurity"),
    "transport": (
        "410365006",
        "Transportation case management",
        "transportation-insecurity",
        "Transportation Insecurity",
    ),
}
SOCIAL_SERVICE_CATEGORY = category(SNOMED, "410606002", "Social service procedure")
SDOH_CATEGORY = category(US_CORE_CATEGORY, "sdoh", "SDOH")
LAB_CATEGORY = category(SNOMED, "108252007", "Laboratory procedure")
LAB_ORDERS: dict[str, tuple[str, str]] = {
    "lipid": ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"),
    "hba1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
    "bmp": ("51990-0", "Basic metabolic panel - Blood"),
}
DIETITIAN_REFERRAL = concept(SNOMED, "103699006", "Patient referral to dietitian")
COUNSELLING_CATEGORY = category(SNOMED, "409063005", "Counseling")

# ---------------------------------------------------------------- encounters

ENCOUNTER_CLASS = {
    "AMB": coding(ACT_CODE, "AMB", "ambulatory"),
    "EMER": coding(ACT_CODE, "EMER", "emergency"),
    "IMP": coding(ACT_CODE, "IMP", "inpatient encounter"),
}
ENCOUNTER_TYPES = {
    "checkup": [category(SNOMED, "185349003", "Encounter for check up")],
    "symptom": [category(SNOMED, "185345009", "Encounter for symptom")],
    "followup": [category(SNOMED, "390906007", "Follow-up encounter")],
    "emergency": [category(SNOMED, "50849002", "Emergency room admission")],
    "admission": [category(SNOMED, "32485007", "Hospital admission")],
}
PRIORITY = {
    "EM": category(ACT_PRIORITY, "EM", "emergency"),
    "EL": category(ACT_PRIORITY, "EL", "elective"),
    "R": category(ACT_PRIORITY, "R", "routine"),
}
DISCHARGE_DISPOSITIONS = {
    "home": "Home",
    "alt-home": "Alternative home",
    "snf": "Skilled nursing facility",
    "rehab": "Rehabilitation",
    "hosp": "Hospital",
    "aadvice": "Left against advice",
    "exp": "Expired",
}
DISPOSITION_CODES = {
    code: category(DISCHARGE_DISPOSITION, code, display) for code, display in DISCHARGE_DISPOSITIONS.items()
}
ADMIT_SOURCES = {
    "emd": category(ADMIT_SOURCE, "emd", "From accident/emergency department"),
    "gp": category(ADMIT_SOURCE, "gp", "General Practitioner referral"),
    "outp": category(ADMIT_SOURCE, "outp", "From outpatient department"),
}
READMISSION_CODE = category(V2_0092, "R", "Re-admission")
PRIMARY_PERFORMER = [category(PARTICIPATION, "PPRF", "primary performer")]
ATTENDER = [category(PARTICIPATION, "ATND", "attender")]
DIAGNOSIS_USE = {
    "AD": category(DIAGNOSIS_ROLE, "AD", "Admission diagnosis"),
    "DD": category(DIAGNOSIS_ROLE, "DD", "Discharge diagnosis"),
    "CC": category(DIAGNOSIS_ROLE, "CC", "Chief complaint"),
}

NOTE_TYPES = {
    "progress": concept(LOINC, "11506-3", "Progress note"),
    "discharge": concept(LOINC, "18842-5", "Discharge summary"),
    "emergency": concept(LOINC, "34111-5", "Emergency department note"),
}
CLINICAL_NOTE = [category(US_CORE_DOCREF, "clinical-note", "Clinical Note")]

# ---------------------------------------------------------------- demographics

RACES: dict[str, tuple[str, str]] = {
    "white": ("2106-3", "White"),
    "black": ("2054-5", "Black or African American"),
    "asian": ("2028-9", "Asian"),
    "aian": ("1002-5", "American Indian or Alaska Native"),
    "nhpi": ("2076-8", "Native Hawaiian or Other Pacific Islander"),
}
ETHNICITIES = {
    "hispanic": ("2135-2", "Hispanic or Latino"),
    "not-hispanic": ("2186-5", "Not Hispanic or Latino"),
}
MARITAL_STATUS = {
    "M": category(MARITAL, "M", "Married"),
    "S": category(MARITAL, "S", "Never Married"),
    "D": category(MARITAL, "D", "Divorced"),
    "W": category(MARITAL, "W", "Widowed"),
}
LANGUAGES = {
    "en": concept(BCP47, "en-US", "English (United States)"),
    "es": concept(BCP47, "es", "Spanish"),
}
IDENTIFIER_TYPES = {
    "MR": category(V2_0203, "MR", "Medical record number"),
    "SS": category(V2_0203, "SS", "Social Security number"),
    "MB": category(V2_0203, "MB", "Member Number"),
}
FAMILY_RELATIONS = {
    "MTH": category(ROLE_CODE, "MTH", "mother"),
    "FTH": category(ROLE_CODE, "FTH", "father"),
    "SIS": category(ROLE_CODE, "SIS", "sister"),
    "BRO": category(ROLE_CODE, "BRO", "brother"),
}
CONSENT_RESEARCH = category(CONSENT_SCOPE, "research", "Research")
CONSENT_CATEGORY = [category(LOINC, "59284-0", "Patient Consent")]
CONSENT_OPT_OUT = category(ACT_CODE, "OPTOUT", "opt-out")
ORG_PROVIDER = [category(ORG_TYPE, "prov", "Healthcare Provider")]
ORG_PAYER = [category(ORG_TYPE, "pay", "Payer")]
LOCATION_TYPES = {
    "HOSP": [category(ROLE_CODE, "HOSP", "Hospital")],
    "ER": [category(ROLE_CODE, "ER", "Emergency room")],
    "HU": [category(ROLE_CODE, "HU", "Hospital unit")],
    "PC": [category(ROLE_CODE, "PC", "primary care clinic")],
}


def luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) check digit for a digit string: used by NPIs and by LOINC codes."""
    from stdnum import luhn

    return int(luhn.calc_check_digit(digits))
