"""Name and address normalisation shared by the NPPES comparison, exclusion screening and the website check."""
from __future__ import annotations

import re
import unicodedata

# Words that do not tell two organisations apart: legal forms and filler.
BUSINESS_NOISE = frozenset({
    "THE", "INC", "INCORPORATED", "LLC", "LLP", "LP", "PLLC", "PC", "PA", "CORP", "CORPORATION",
    "CO", "COMPANY", "LTD", "LIMITED", "DBA", "OF", "AND",
})
_INITIALS = {"P", "L", "LL", "I", "N", "C", "CO", "PL", "PLL", "LT"}
# Titles and post-nominals that a principal's name may carry.
PERSON_NOISE = frozenset({
    "DR", "MR", "MRS", "MS", "MX", "PROF", "MD", "DO", "PHD", "PSYD", "RN", "NP", "PA", "LCSW", "LPC",
    "LMFT", "LCADC", "CADC", "MSW", "MA", "DNP", "APRN", "FNP", "PMHNP", "JR", "SR", "II", "III",
    "IV", "ESQ", "DDS", "DMD", "RPH", "PHARMD", "LADC", "MBA", "MPH", "FACP", "FAPA",
})
ADDRESS_WORDS = {
    "STREET": "ST", "AVENUE": "AVE", "AV": "AVE", "ROAD": "RD", "BOULEVARD": "BLVD", "DRIVE": "DR",
    "SUITE": "STE", "LANE": "LN", "COURT": "CT", "PLACE": "PL", "HIGHWAY": "HWY", "PARKWAY": "PKWY",
    "NORTH": "N", "SOUTH": "S", "EAST": "E", "WEST": "W", "FLOOR": "FL", "BUILDING": "BLDG",
    "CIRCLE": "CIR", "TERRACE": "TER", "SQUARE": "SQ", "FIRST": "1ST", "SECOND": "2ND", "THIRD": "3RD",
}


_WORD = re.compile(r"[A-Z0-9]+")


def tokens(text: str | None) -> list[str]:
    """Upper-case ASCII words: accents folded, '&' read as AND, punctuation dropped."""
    if not text:
        return []
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").upper()
    folded = folded.replace("&", " AND ").replace("'", "")
    return _WORD.findall(folded)


def business_key(name: str | None) -> str:
    """An organisation name without legal forms and punctuation: 'The Harbor Center, LLC' -> 'HARBOR CENTER'."""
    merged: list[str] = []
    for word in tokens(name):
        # "P.C." and "L.L.C." arrive as single letters: read them as the abbreviation they spell.
        if len(word) == 1 and merged and len(merged[-1]) <= 3 and merged[-1].isalpha() and merged[-1] in _INITIALS:
            merged[-1] += word
        else:
            merged.append(word)
    return " ".join(w for w in merged if w not in BUSINESS_NOISE)


def person_key(first: str | None, last: str | None) -> str:
    """'FIRST LAST' for a person; middle names are left out because lists record them inconsistently.

    Titles are not stripped here: these are name columns, and 'DO' is a real surname.
    """
    first_words, last_words = tokens(first), tokens(last)
    if not first_words or not last_words:
        return ""
    return f"{first_words[0]} {' '.join(last_words)}"


def person_key_from_full_name(name: str | None) -> str:
    """'Dr. Jane Q. Doe, MD' or 'Doe, Jane Q' -> 'JANE DOE'."""
    if not name:
        return ""
    if "," in name:
        last, _, rest = name.partition(",")
        rest_words = [w for w in tokens(rest) if w not in PERSON_NOISE]
        last_words = [w for w in tokens(last) if w not in PERSON_NOISE]
        if rest_words and last_words:
            return person_key(rest_words[0], " ".join(last_words))
    words = [w for w in tokens(name) if w not in PERSON_NOISE]
    if len(words) < 2:
        return ""
    return person_key(words[0], words[-1])


def address_key(street: str | None) -> str:
    return " ".join(ADDRESS_WORDS.get(w, w) for w in tokens(street))


def zip5(postal_code: str | None) -> str:
    digits = re.sub(r"\D", "", postal_code or "")
    # OEPS files lost leading zeros of ZIP codes; pad 4-digit codes back.
    if len(digits) in (4, 8):
        digits = "0" + digits
    return digits[:5]
