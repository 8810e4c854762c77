"""What a person reads on a page, and what must never be in it: Python's own spelling of values."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from backoffice.models import Base
from backoffice.services import profile

_HIDDEN_TAGS = {"script", "style", "template", "head"}
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TextOnly(HTMLParser):
    """Text nodes outside script, style and elements hidden with display:none (Flask-Admin keeps its filter
    data in such a div), one line per block of text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []  # for each open element: is it hidden?
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID_TAGS:
            return
        attributes = dict(attrs)
        style = (attributes.get("style") or "").replace(" ", "").lower()
        hidden = (tag in _HIDDEN_TAGS or "display:none" in style or "hidden" in attributes
                  or "d-none" in (attributes.get("class") or "").split())
        self.stack.append(hidden or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag):
        if tag not in _VOID_TAGS and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not (self.stack and self.stack[-1]) and data.strip():
            self.parts.append(" ".join(data.split()))


def visible_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html)
    return "\n".join(parser.parts)


def _raw_codes() -> set[str]:
    """Codes that have words of their own and read as codes: every enum or vocabulary value written with an
    underscore (in_review, substance_use_treatment), and the lower-case acronyms of the vocabularies (iop for
    "Intensive outpatient (IOP)"). A code that is a plain word (naloxone, detox) may stand in a sentence."""
    codes = set()
    for mapper in Base.registry.mappers:
        for column in mapper.columns:
            enum_class = getattr(column.type, "enum_class", None)
            if enum_class is not None:
                codes |= {m.value for m in enum_class if "_" in m.value}
    for field, words in profile.value_labels().items():
        if field not in ("fields", "parts"):
            codes |= {code for code, label in words.items() if "_" in code or code.upper() in label}
    return codes


RAW_CODES = _raw_codes()
_CODE = re.compile(r"(?<![\w.:/@#-])(" + "|".join(sorted(map(re.escape, RAW_CODES), key=len, reverse=True))
                   + r")(?![\w.:/@-])")
PROBLEMS = {
    "a Python object's repr": re.compile(r"object at 0x[0-9a-f]+"),
    "None shown as text": re.compile(r"\bNone\b"),
    "an ISO timestamp": re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?"),
    "microseconds": re.compile(r"\d{2}:\d{2}:\d{2}\.\d{3,6}"),
    "a raw code where a label exists": _CODE,
}


def readability_problems(html: str) -> list[str]:
    """Each thing on the page a person should not have to read, with the line it is on."""
    found = []
    for line in visible_text(html).splitlines():
        for what, pattern in PROBLEMS.items():
            match = pattern.search(line)
            if match:
                found.append(f"{what}: {match.group(0)!r} in {line[:160]!r}")
    return found
