"""Controlled vocabularies (US states, levels of care, services, populations, payment) and the mapping of the
SAMHSA treatment locator's labels onto them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "PR": "Puerto Rico", "GU": "Guam", "VI": "U.S. Virgin Islands", "AS": "American Samoa",
    "MP": "Northern Mariana Islands", "FM": "Federated States of Micronesia",
    "MH": "Marshall Islands", "PW": "Palau",
}

# The time zone an organisation's dates are shown in when it has not chosen one: the zone of the state of its
# first location. Several states span two zones (Florida's panhandle, west Texas, most of Idaho's north, ...);
# each is given its main zone, the one most of its people live in.
STATE_TIME_ZONES = {
    **dict.fromkeys(("CT", "DE", "DC", "FL", "GA", "ME", "MD", "MA", "NH", "NJ", "NY", "NC", "OH", "PA", "RI",
                     "SC", "VT", "VA", "WV"), "America/New_York"),
    "MI": "America/Detroit", "IN": "America/Indiana/Indianapolis", "KY": "America/New_York",
    **dict.fromkeys(("AL", "AR", "IL", "IA", "KS", "LA", "MN", "MS", "MO", "NE", "ND", "OK", "SD", "TN", "TX",
                     "WI"), "America/Chicago"),
    **dict.fromkeys(("CO", "MT", "NM", "UT", "WY"), "America/Denver"),
    "ID": "America/Boise", "AZ": "America/Phoenix",
    **dict.fromkeys(("CA", "NV", "OR", "WA"), "America/Los_Angeles"),
    "AK": "America/Anchorage", "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico", "VI": "America/St_Thomas", "GU": "Pacific/Guam", "MP": "Pacific/Saipan",
    "AS": "Pacific/Pago_Pago", "FM": "Pacific/Pohnpei", "MH": "Pacific/Majuro", "PW": "Pacific/Palau",
}

LEVELS_OF_CARE = {
    "detox": "Detoxification / withdrawal management",
    "residential": "Residential",
    "php": "Partial hospitalisation (PHP)",
    "iop": "Intensive outpatient (IOP)",
    "outpatient": "Outpatient",
    "otp": "Opioid treatment program (OTP / MOUD)",
    "telehealth": "Telehealth",
    "recovery_residence": "Recovery residence",
    "hospital_inpatient": "Hospital inpatient",
}

HARM_REDUCTION_SERVICES = {
    "naloxone": "Naloxone distribution",
    "fentanyl_test_strips": "Fentanyl test strips",
    "syringe_services": "Syringe services",
    "moud": "Medications for opioid use disorder (MOUD)",
    "peer_support": "Peer support",
}

SERVICES = {
    "substance_use_treatment": "Substance use treatment",
    "mental_health_treatment": "Mental health treatment",
    "co_occurring": "Co-occurring disorders treatment",
    "alcohol_use_disorder_medication": "Medications for alcohol use disorder",
    "psychiatric_medication": "Medications for psychiatric disorders",
    "opioid_emergency_dosing": "Methadone or buprenorphine for pain management or emergency dosing",
    **HARM_REDUCTION_SERVICES,
}

POPULATIONS = {
    "adults": "Adults",
    "children": "Children",
    "adolescents": "Adolescents",
    "young_adults": "Young adults",
    "seniors": "Older adults",
    "women": "Women",
    "men": "Men",
    "pregnant_postpartum": "Pregnant or postpartum people",
    "lgbtq": "LGBTQ+ people",
    "veterans": "Veterans",
    "active_duty_military": "Active-duty military",
    "military_families": "Military families",
    "justice_involved": "People involved with the justice system",
    "dui_dwi": "People charged with driving under the influence (DUI/DWI)",
    "deaf_hard_of_hearing": "Deaf or hard of hearing people",
    "people_on_moud": "People taking medication for opioid use disorder",
    "serious_mental_illness": "People with serious mental illness (SMI)",
    "serious_emotional_disturbance": "Children and adolescents with serious emotional disturbance (SED)",
    "ptsd": "People with post-traumatic stress disorder (PTSD)",
    "trauma": "People who have experienced trauma",
    "domestic_violence": "People who have experienced intimate partner or domestic violence",
    "sexual_abuse": "People who have experienced sexual abuse",
    "hiv_aids": "People with HIV or AIDS",
    "eating_disorders": "People with eating disorders",
    "traumatic_brain_injury": "People with traumatic brain injury (TBI)",
    "dementia": "People with Alzheimer's disease or dementia",
}

PAYMENT_ACCEPTED = {
    "medicaid": "Medicaid",
    "medicare": "Medicare",
    "private_insurance": "Private health insurance",
    "military_insurance": "Military insurance (e.g. TRICARE)",
    "state_funded": "State-financed or block-grant funding",
    "local_government": "County or local government funds",
    "federal_government": "Federal or other government funding for substance use programs",
    "veterans_affairs": "U.S. Department of Veterans Affairs funds",
    "ihs_tribal": "Indian Health Service, tribal or urban Indian (ITU) funds",
    "self_pay": "Cash or self-payment",
    "sliding_scale": "Sliding fee scale",
    "payment_assistance": "Payment assistance",
    "free": "Free of charge for those who cannot pay",
}

# A listing's four coded lists and the vocabulary each one draws from.
VOCABULARIES = {
    "levels_of_care": LEVELS_OF_CARE,
    "services": SERVICES,
    "populations": POPULATIONS,
    "payment_accepted": PAYMENT_ACCEPTED,
}
LIST_FIELDS = tuple(VOCABULARIES)

MAPPINGS = Path(__file__).resolve().parent.parent / "data" / "vocab"
# The mapping new imports use. Earlier versions stay as they are: a data migration names the one it applied.
CURRENT_MAPPING_VERSION = 1


def _key(label: str) -> str:
    return " ".join(label.split()).casefold()


@dataclass(frozen=True)
class Mapped:
    """Codes by list, and the source values that the mapping does not know (in the order met)."""
    codes: dict[str, list[str]]
    unmapped: list[str]


@dataclass(frozen=True)
class LabelMapping:
    """Locator labels -> codes of the vocabularies, from one frozen version of data/vocab/samhsa-locator-vN.json."""
    version: int
    entries: dict[str, dict[str, tuple[str, ...]]]

    def codes_for(self, label: str) -> dict[str, tuple[str, ...]] | None:
        return self.entries.get(_key(label))

    def map_labels(self, labels: list[str]) -> Mapped:
        """The codes a list of locator labels stands for; a label may add codes to more than one list."""
        codes: dict[str, set[str]] = {field: set() for field in LIST_FIELDS}
        unmapped: list[str] = []
        for label in labels:
            found = self.codes_for(label)
            if found is None:
                unmapped.append(label)
                continue
            for field, values in found.items():
                codes[field].update(values)
        return Mapped({field: sorted(values) for field, values in codes.items()}, unmapped)

    def remap(self, lists: dict[str, list[str]]) -> Mapped:
        """A listing's four lists with every label the mapping knows replaced by its codes (which may belong to
        another of the lists). Anything else stays where it is, as it is: codes, and values the mapping does not
        know, which are also returned as unmapped unless they are codes of their list's vocabulary."""
        codes: dict[str, list[str]] = {field: [] for field in LIST_FIELDS}
        unmapped: list[str] = []

        def add(field: str, value: str) -> None:
            if value not in codes[field]:
                codes[field].append(value)

        for field in LIST_FIELDS:
            for value in lists.get(field) or []:
                found = self.codes_for(value) if isinstance(value, str) else None
                if found is None:
                    add(field, value)
                    if value not in VOCABULARIES[field]:
                        unmapped.append(value)
                else:
                    for target, targets in found.items():
                        for code in targets:
                            add(target, code)
        return Mapped({field: sorted(values, key=str) for field, values in codes.items()}, unmapped)


@lru_cache
def samhsa_mapping(version: int = CURRENT_MAPPING_VERSION) -> LabelMapping:
    """One version of the locator mapping, exactly as it was published (versions are never edited)."""
    document = json.loads((MAPPINGS / f"samhsa-locator-v{version}.json").read_text(encoding="utf-8"))
    entries: dict[str, dict[str, tuple[str, ...]]] = {}
    for entry in document["labels"]:
        key = _key(entry["label"])
        if key in entries:
            raise ValueError(f"samhsa-locator-v{version}.json maps {entry['label']!r} twice")
        entries[key] = {field: tuple(entry[field]) for field in LIST_FIELDS if entry.get(field)}
    return LabelMapping(version=document["version"], entries=entries)
