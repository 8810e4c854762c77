"""Forms of the review workflow pages; each carries the request version it was drawn from."""
from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    Form,
    FormField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, InputRequired, Length, Optional
from wtforms.widgets import CheckboxInput, HiddenInput, ListWidget

from backoffice.admin.forms import IdsField, reason_field
from backoffice.models import AssessmentStatus, DecisionOutcome


class VersionedForm(FlaskForm):
    version = IntegerField(widget=HiddenInput(), validators=[InputRequired()])


class ClaimForm(VersionedForm):
    pass


class AssignForm(VersionedForm):
    assignee = SelectField("Assign to", coerce=int, validators=[InputRequired()])


class BulkAssignForm(FlaskForm):
    """A lead hands the requests ticked in the queue to one researcher."""

    ids = IdsField("Requests", what="request numbers")
    assignee = SelectField("Assign the ticked requests to", coerce=int, validators=[InputRequired()])
    reason = reason_field()


def _optional_int(value):
    return int(value) if value not in (None, "", "None") else None


class AssessmentItemForm(Form):
    """One criterion's part of the assessment form (its fields are named assess-<CODE>-<field>)."""

    status = SelectField("Assessment", choices=[SelectChoice(s.value, s.label) for s in AssessmentStatus],
                         validators=[DataRequired()])
    note = TextAreaField("Note", validators=[Optional(), Length(max=5000)])
    source = StringField("Source", validators=[Optional(), Length(max=200)])
    url = StringField("URL", validators=[Optional(), Length(max=500), URL(require_tld=False,
                                                                        message="Enter an http or https address.")])
    document_id = SelectField("Document", coerce=_optional_int, validators=[Optional()])
    check_run_id = SelectField("Check result", coerce=_optional_int, validators=[Optional()])
    confirm = BooleanField("Confirm the carried-over assessment as it stands")


def assessment_item_name(code: str) -> str:
    return f"assess-{code}"


class AssessmentsForm(VersionedForm):
    """Every applicable criterion of a request assessed in one form: one item per criterion."""

    codes: list[str]

    @classmethod
    def of(cls, codes: list[str], **kwargs: Any) -> AssessmentsForm:
        """The form for these criteria; `items` maps a code to what its item starts with (formdata=None)."""
        fields = {assessment_item_name(code): FormField(AssessmentItemForm, label=code) for code in codes}
        form_class = type("AssessmentsForm", (cls,), fields)
        form = form_class(**kwargs)
        form.codes = list(codes)
        return form

    def item(self, code: str) -> AssessmentItemForm:
        return self[assessment_item_name(code)].form

    def items(self) -> list[tuple[str, AssessmentItemForm]]:
        return [(code, self.item(code)) for code in self.codes]


class RequestInfoForm(VersionedForm):
    message = TextAreaField("Question for the provider", validators=[DataRequired(message="Write the question."),
                                                                     Length(max=5000)])


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class DecisionForm(VersionedForm):
    outcome = RadioField("Decision", choices=[SelectChoice(DecisionOutcome.APPROVED.value, "Approve"),
                                              SelectChoice(DecisionOutcome.REJECTED.value, "Reject")],
                         validators=[DataRequired(message="Choose approve or reject.")])
    reason_codes = MultiCheckboxField("Criteria not met (for a rejection)", choices=[], validate_choice=False)
    provider_note = TextAreaField("Note the provider sees", validators=[Optional(), Length(max=5000)])
    internal_note = TextAreaField("Internal note (research team and auditors only)",
                                  validators=[Optional(), Length(max=5000)])


class SignOffForm(VersionedForm):
    pass


class DeclineForm(VersionedForm):
    reason = reason_field("Why you decline to sign off", "Give the reason.")
