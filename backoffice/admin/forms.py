"""Form pieces the staff pages share: the reason box, under the one reason rule (services/reasons.py), and
the hidden row version a form was drawn from."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import HiddenInput

from backoffice.services.reasons import REASON_MAX_LENGTH, REASON_MIN_LENGTH

AUDIT_REASON = "Give a reason: it is kept in the audit trail."


def _stripped(value):
    return value.strip() if value else value


def reason_field(label: str = "Reason", message: str = AUDIT_REASON, *, minimum: int = REASON_MIN_LENGTH,
                 maximum: int = REASON_MAX_LENGTH, strip: bool = True) -> TextAreaField:
    """A required reason of REASON_MIN_LENGTH to REASON_MAX_LENGTH characters. Stripped like the services strip
    it, so "  ab  " is refused here, beside the field, not only by the service."""
    length = Length(min=minimum, max=maximum) if minimum > 1 else Length(max=maximum)
    return TextAreaField(label, validators=[DataRequired(message), length], filters=[_stripped] if strip else [])


def version_field() -> IntegerField:
    return IntegerField(widget=HiddenInput(), validators=[Optional()])


class ReasonForm(FlaskForm):
    """A reason for the audit trail and the version of the row it is about."""

    reason = reason_field()
    row_version = version_field()


class IdsField(Field):
    """The rows ticked in a list (checkboxes named like the field, each valued with a row's id): their ids,
    each once, in order. Anything but ids is refused beside the field."""

    def __init__(self, label: str = "Chosen", validators=None, what: str = "rows", **kwargs):
        super().__init__(label, validators, **kwargs)
        self.what = what

    def process_formdata(self, valuelist):
        self.data = []
        try:
            chosen = {int(value) for value in valuelist}
        except ValueError:
            raise ValueError(f"Those are not {self.what}: reload the page and choose again.") from None
        if any(not 0 < ident <= 2**31 - 1 for ident in chosen):
            raise ValueError(f"Those are not {self.what}: reload the page and choose again.")
        self.data = sorted(chosen)

    def _value(self):
        return ""
