"""The criteria catalogue editor's form: the whole next version, criterion by criterion."""
from __future__ import annotations

import re

from flask_wtf import FlaskForm
from wtforms import Form
from wtforms.fields import (
    BooleanField,
    DateField,
    FieldList,
    FormField,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from backoffice.admin.review_forms import MultiCheckboxField
from backoffice.services import criteria
from backoffice.vocab import LEVELS_OF_CARE


def _one_newline(text: str | None) -> str | None:
    """A browser sends a textarea's line breaks as CR LF: stored as LF, the text compares equal to the version's."""
    return text.replace("\r\n", "\n") if text else text


class CriterionForm(Form):
    """One criterion of the next version (a subform: the catalogue form carries the CSRF token)."""

    code = StringField("Code", validators=[InputRequired("Give the criterion a code."), Length(max=40)])
    title = StringField("Title", validators=[InputRequired("Give the criterion a title."), Length(max=300)])
    guidance = TextAreaField("Guidance for the researcher", filters=[_one_newline],
                             validators=[InputRequired("Say how a researcher assesses it."), Length(max=5000)])
    evidence = TextAreaField("Evidence needed", filters=[_one_newline],
                             validators=[InputRequired("Say what evidence is needed."), Length(max=2000)])
    required = BooleanField("Required for a listing")
    required_for_advertisers = BooleanField("Required for advertisers (even where optional for a listing)")
    advertisers_only = BooleanField("Assessed for advertiser applications only")
    applies_to_levels = MultiCheckboxField("Applies to providers offering (none ticked: every provider)",
                                           choices=[SelectChoice(code, words) for code, words in LEVELS_OF_CARE.items()])
    automated_check = SelectField("Automated check", choices=[
        SelectChoice("", "No automated check"),
        *(SelectChoice(kind, words) for kind, words in criteria.AUTOMATED_CHECKS.items())])
    freshness_days = StringField("Freshness limit in days (empty: no limit)", validators=[Length(max=10)])

    def validate_code(self, field) -> None:
        if field.data and not re.fullmatch(criteria.CODE_PATTERN, field.data):
            raise ValidationError(f"The code must be {criteria.CODE_RULE}, for example LICENCE_CURRENT.")

    def validate_title(self, field) -> None:
        if not (field.data or "").strip():
            raise ValidationError("Give the criterion a title.")

    def validate_freshness_days(self, field) -> None:
        text = (field.data or "").strip()
        if not text:
            return
        if not re.fullmatch(r"-?\d+", text):
            raise ValidationError("The freshness limit must be a whole number of days, or empty for no limit.")
        problem = criteria.freshness_problem(int(text))
        if problem:
            raise ValidationError(problem)

    def definition(self) -> dict:
        """This criterion as a definition entry `criteria.publish` takes (the form must have validated)."""
        freshness = (self.freshness_days.data or "").strip()
        return {"code": self.code.data, "title": self.title.data.strip(), "guidance": self.guidance.data,
                "evidence": self.evidence.data, "required": self.required.data,
                "required_for_advertisers": self.required_for_advertisers.data,
                "advertisers_only": self.advertisers_only.data,
                "applies_to_levels": list(self.applies_to_levels.data or []),
                "automated_check": self.automated_check.data or None,
                "freshness_days": int(freshness) if freshness else None}


class CatalogueDraftForm(FlaskForm):
    """The next version as typed: its criteria in order, its notes, and the version it was drafted from."""

    based_on = HiddenField()
    notes = TextAreaField("What changed and why (published with the version)", filters=[_one_newline],
                          validators=[Length(max=5000)])
    criteria = FieldList(FormField(CriterionForm), label="Criteria")
    schedule_rereviews = BooleanField("Open a re-review for each provider the impact report names, each told why")
    rereview_deadline = DateField("The providers answer by", validators=[Optional()],
                                  render_kw={"aria-describedby": "rereview-deadline-help"})

    #: Set by the publish page: notes are needed to publish, not to preview.
    publishing = False

    def validate_notes(self, field) -> None:
        if self.publishing and not (field.data or "").strip():
            raise ValidationError("Say what changed and why: the notes are published with the version.")

    def validate_criteria(self, field) -> None:
        if not field.entries:
            raise ValidationError("A catalogue needs at least one criterion.")
        seen: set[str] = set()
        for entry in field.entries:
            code = entry.form.code
            if code.data and code.data in seen:
                code.errors = [*code.errors, f"{code.data} is already the code of another criterion."]
                raise ValidationError("Each criterion needs its own code.")
            seen.add(code.data)

    def based_on_version(self) -> int:
        """The version the draft was edited from; 0 when none was in force."""
        return int(self.based_on.data) if (self.based_on.data or "").isdigit() else 0

    def next_version(self) -> dict:
        """The draft as a definition `criteria.publish` takes (the form must have validated)."""
        return {"notes": (self.notes.data or "").strip() or None,
                "criteria": [entry.form.definition() for entry in self.criteria.entries]}

    def values(self) -> list[dict]:
        """What was typed for each criterion, as the form's data (valid or not), to build the form again."""
        return [dict(entry.form.data) for entry in self.criteria.entries]
