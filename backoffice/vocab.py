"""Controlled vocabularies: US states, levels of care, services."""

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

LEVELS_OF_CARE = {
    "detox": "Detoxification / withdrawal management",
    "residential": "Residential",
    "php": "Partial hospitalisation (PHP)",
    "iop": "Intensive outpatient (IOP)",
    "outpatient": "Outpatient",
    "otp": "Opioid treatment program (OTP / MOUD)",
    "telehealth": "Telehealth",
    "recovery_residence": "Recovery residence",
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
    **HARM_REDUCTION_SERVICES,
}
