"""Portal forms. Repeating parts (locations, licences, ...) are WTForms FieldLists: each page shows the
saved rows plus one blank row, so a provider adds rows one save at a time without JavaScript."""
from __future__ import annotations

from datetime import date
from typing import Any, Callable

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    FieldList,
    FloatField,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    MultipleFileField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from backoffice.services import advertising_copy
from backoffice.services import listing_rules as rules
from backoffice.services.listing_requests import Attestation
from backoffice.vocab import HARM_REDUCTION_SERVICES, US_STATES

EMPTY = (None, "", [], False)
MAX_ROWS = 50


def rule(check: Callable[[Any], Any], normalise: bool = True):
    """A WTForms validator from a listing rule; the field shows the rule's message and its normalised value."""
    def validator(form, field):
        if field.data in EMPTY:
            return
        try:
            value = check(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        if normalise:
            field.data = value
    return validator


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _pairs(vocabulary: dict[str, str]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in vocabulary.items()]


STATE_CHOICES = [SelectChoice("", "Choose a state")] + _pairs({code: f"{code} – {name}" for code, name in US_STATES.items()})
ROLE_CHOICES = [SelectChoice("", "Choose a role")] + _pairs(rules.PRINCIPAL_ROLES)


class RowForm(Form):
    """One row of a repeating part. A blank row or one marked for removal is skipped, not validated."""

    required: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    def skipped(self) -> bool:
        return bool(self.remove.data) or all(
            field.data in EMPTY or (isinstance(field.data, str) and not field.data.strip())
            for name, field in self._fields.items() if name != "remove")

    def validate(self, extra_validators=None) -> bool:
        if self.skipped():
            return True
        valid = super().validate(extra_validators)
        for name in self.required:
            field = self[name]
            if field.data in EMPTY and not field.errors:
                field.errors = [f"{field.label.text} is required."]
                valid = False
        return valid

    def value(self) -> dict[str, Any]:
        values = {}
        for name in self.fields:
            data = self[name].data
            if isinstance(data, date):
                data = data.isoformat()
            elif isinstance(data, str):
                data = data.strip() or None
            values[name] = data
        return values


class LocationForm(RowForm):
    required = ("street1", "city", "state", "zip")
    fields = ("street1", "street2", "city", "state", "zip", "county", "latitude", "longitude", "phone")
    street1 = StringField("Street address", [Length(max=200)])
    street2 = StringField("Address line 2 (optional)", [Length(max=200)])
    city = StringField("City", [Length(max=100)])
    state = SelectField("State", choices=STATE_CHOICES, default="", validators=[rule(rules.state)])
    zip = StringField("ZIP code", [rule(rules.zip_code)])
    county = StringField("County (optional)", [Length(max=100)])
    latitude = FloatField("Latitude (optional)", [Optional(), rule(rules.latitude)])
    longitude = FloatField("Longitude (optional)", [Optional(), rule(rules.longitude)])
    phone = StringField("Phone at this location (optional)", [Length(max=40), rule(rules.phone)])
    remove = BooleanField("Remove this location")


class LicenceForm(RowForm):
    required = ("state", "number", "licence_type", "expires_on")
    fields = ("state", "number", "licence_type", "issuing_agency", "levels_of_care", "expires_on")
    state = SelectField("Issuing state", choices=STATE_CHOICES, default="", validators=[rule(rules.state)])
    number = StringField("Licence number", [Length(max=100)])
    licence_type = StringField("Licence type", [Length(max=200)])
    issuing_agency = StringField("Issuing agency (optional)", [Length(max=200)])
    levels_of_care = MultiCheckboxField("Levels of care it covers", choices=_pairs(rules.LEVELS_OF_CARE))
    expires_on = DateField("Expiry date", [Optional(), rule(rules.future_date, normalise=False)])
    remove = BooleanField("Remove this licence")


class AccreditationForm(RowForm):
    required = ("body",)
    fields = ("body", "accreditation_id", "expires_on")
    body = StringField("Accrediting body (e.g. Joint Commission, CARF)", [Length(max=200)])
    accreditation_id = StringField("Accreditation id (optional)", [Length(max=100)])
    expires_on = DateField("Expiry date (optional)", [Optional(), rule(rules.future_date, normalise=False)])
    remove = BooleanField("Remove this accreditation")


class PrincipalForm(RowForm):
    required = ("name", "role")
    fields = ("name", "role", "npi")
    name = StringField("Full name", [Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="")
    npi = StringField("Individual NPI (optional)", [rule(rules.npi)])
    remove = BooleanField("Remove this person")


def _rows(form_class: type[RowForm], label: str) -> FieldList:
    return FieldList(FormField(form_class), label, min_entries=0, max_entries=MAX_ROWS)


class VersionedForm(FlaskForm):
    """A button that acts on a request as the provider saw it; a change in between is a conflict."""
    version = IntegerField(widget=HiddenField.widget, validators=[Optional()])

    def act_on(self, version: int) -> None:
        """Carry this version when the form is shown again, whatever was posted."""
        self.version.raw_data = []
        self.version.data = version


class ListingForm(VersionedForm):
    legal_name = StringField("Legal name", [DataRequired("Give the organisation's registered legal name."),
                                            Length(max=300)])
    public_name = StringField("Public name (as the directory shows it)",
                              [DataRequired("Give the name the public knows you by."), Length(max=300)])
    npi = StringField("Organisation NPI (type 2, 10 digits)", [rule(rules.npi)])
    website = StringField("Website", [Length(max=500), rule(rules.website)])
    phone = StringField("Admissions phone", [Length(max=40), rule(rules.phone)])
    email = StringField("Admissions e-mail (optional)", [Length(max=254), rule(rules.email)])
    levels_of_care = MultiCheckboxField("Levels of care", choices=_pairs(rules.LEVELS_OF_CARE))
    services = MultiCheckboxField("Services", choices=_pairs(rules.CORE_SERVICES))
    harm_reduction = MultiCheckboxField("Harm-reduction services", choices=_pairs(HARM_REDUCTION_SERVICES))
    populations = MultiCheckboxField("Populations served", choices=_pairs(rules.POPULATIONS))
    payment_accepted = MultiCheckboxField("Payment accepted", choices=_pairs(rules.PAYMENT_ACCEPTED))
    locations = _rows(LocationForm, "Locations")
    licences = _rows(LicenceForm, "Licences")
    accreditations = _rows(AccreditationForm, "Accreditations")
    principals = _rows(PrincipalForm, "Principals")
    no_referral_fees = BooleanField("We pay no one, and take no payment, for referring patients (no referral fees).")
    no_lead_generation = BooleanField("We do not buy or sell patient leads and use no lead-generation service.")
    no_patient_brokering = BooleanField("We do not offer patients or anyone else anything of value to choose our "
                                        "programme (no patient brokering).")
    signed_by = StringField("Your full name, as signature", [Length(max=200)])
    save = SubmitField("Save draft")
    submit_request = SubmitField("Submit for review")

    CHILDREN = ("locations", "licences", "accreditations", "principals")
    SCALARS = ("legal_name", "public_name", "npi", "website", "phone", "email")

    def use_vocabularies(self, vocabularies: dict[str, dict[str, str]]) -> None:
        """Offer the vocabulary plus any value the current listing already holds."""
        self.levels_of_care.choices = _pairs(vocabularies["levels_of_care"])
        self.services.choices = _pairs({k: v for k, v in vocabularies["services"].items()
                                        if k not in HARM_REDUCTION_SERVICES})
        self.populations.choices = _pairs(vocabularies["populations"])
        self.payment_accepted.choices = _pairs(vocabularies["payment_accepted"])

    def add_blank_rows(self) -> None:
        for name in self.CHILDREN:
            if len(self[name].entries) < MAX_ROWS:
                self[name].append_entry()

    @staticmethod
    def data_from(proposed: dict[str, Any]) -> dict[str, Any]:
        """Form data from a proposed listing (dates become dates, services split out harm reduction)."""
        data = {name: proposed.get(name) or "" for name in ListingForm.SCALARS}
        services = proposed.get("services") or []
        data["services"] = [s for s in services if s not in HARM_REDUCTION_SERVICES]
        data["harm_reduction"] = [s for s in services if s in HARM_REDUCTION_SERVICES]
        for name in ("levels_of_care", "populations", "payment_accepted"):
            data[name] = list(proposed.get(name) or [])
        for name in ListingForm.CHILDREN:
            rows = []
            for item in proposed.get(name) or []:
                row = {key: value for key, value in item.items() if value is not None}
                if isinstance(row.get("expires_on"), str):
                    row["expires_on"] = date.fromisoformat(row["expires_on"])
                rows.append(row)
            data[name] = rows
        return data

    def proposed(self) -> dict[str, Any]:
        """The proposed listing, in the shape of services.profile, from the validated form."""
        values: dict[str, Any] = {name: (self[name].data or "").strip() or None for name in self.SCALARS}
        values["levels_of_care"] = list(self.levels_of_care.data or [])
        values["services"] = list(self.services.data or []) + list(self.harm_reduction.data or [])
        values["populations"] = list(self.populations.data or [])
        values["payment_accepted"] = list(self.payment_accepted.data or [])
        for name in self.CHILDREN:
            values[name] = [entry.form.value() for entry in self[name].entries if not entry.form.skipped()]
        return values

    def attestation(self) -> Attestation:
        return Attestation(bool(self.no_referral_fees.data), bool(self.no_lead_generation.data),
                           bool(self.no_patient_brokering.data), self.signed_by.data or "")


class OrganisationForm(FlaskForm):
    legal_name = StringField("Legal name (as registered with the state)",
                             [DataRequired("Give the organisation's registered legal name."), Length(max=300)])
    public_name = StringField("Public name (as the directory should show it)",
                              [DataRequired("Give the name the public knows you by."), Length(max=300)])
    submit = SubmitField("Create organisation and start a listing request")


class AnswerForm(VersionedForm):
    message = TextAreaField("Your answer", [DataRequired("Write your answer to the question."), Length(max=10000)])
    files = MultipleFileField("Documents (optional: PDF, PNG or JPEG)")
    submit = SubmitField("Send answer")


class UploadForm(FlaskForm):
    files = MultipleFileField("Documents (PDF, PNG or JPEG)")
    submit = SubmitField("Upload")


class WithdrawForm(VersionedForm):
    """The confirmation step of a withdrawal: only a post carrying `confirm` (its button) withdraws."""
    reason = TextAreaField("Why are you withdrawing? (optional)", [Length(max=2000)])
    confirm = SubmitField("Yes, withdraw this request")


def _claims_rule(form, field):
    try:
        advertising_copy.claims((field.data or "").splitlines())
    except ValueError as error:
        raise ValidationError(str(error)) from None


def _landing_rule(form, field):
    try:
        advertising_copy.landing_url(field.data, form.website)
    except ValueError as error:
        raise ValidationError(str(error)) from None


def _copy_rule(check: Callable[[str], Any]):
    def validator(form, field):
        try:
            check(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None
    return validator


class AdvertiseForm(FlaskForm):
    """The advertiser application: the advertisement the provider asks to run. The view sets `website`, the
    provider's listed website, which the landing page must be on."""
    website: str | None = None
    headline = StringField("Headline", [_copy_rule(advertising_copy.headline)])
    text = TextAreaField("Text of the advertisement", [_copy_rule(advertising_copy.text)])
    claims = TextAreaField("Claims the advertisement makes (one per line)", [_claims_rule])
    landing_url = StringField("Landing page address", [_landing_rule])
    submit = SubmitField("Send my application")

    def copy(self) -> advertising_copy.Copy:
        return advertising_copy.Copy.from_form(self.headline.data, self.text.data, self.claims.data,
                                               self.landing_url.data)


class ActionForm(FlaskForm):
    """A button with nothing to fill in: the CSRF token is its only field."""
    submit = SubmitField()


class OrganisationZoneForm(FlaskForm):
    # services/time_zones.py judges the value, with a clearer message than "Not a valid choice".
    time_zone = SelectField("Show your organisation's dates in", validate_choice=False)
    submit = SubmitField("Save the time zone")
