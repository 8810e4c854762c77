"""Every listing rule with good and bad values, on its own and through the form: errors beside the field,
nothing saved."""
import re
from datetime import date, timedelta

import pytest

from backoffice.services import listing_requests
from backoffice.services import listing_rules as rules
from backoffice.services.errors import DomainError
from tests.portal_helpers import VALID_NPI, listing_data, provider_with_draft, reload

YESTERDAY = (date.today() - timedelta(days=1)).isoformat()
TODAY = date.today().isoformat()


@pytest.mark.parametrize("value,expected", [
    ("1234567893", "1234567893"), ("1245319599", "1245319599"), ("123456789-3", "1234567893"),
    (" 1234567893 ", "1234567893"),
])
def test_npi_accepts_numbers_with_a_correct_check_digit(value, expected):
    assert rules.npi(value) == expected


@pytest.mark.parametrize("value,message", [
    ("1234567890", "check digit"), ("1234567894", "check digit"), ("0000000001", "check digit"),
    ("123456789", "exactly 10 digits"), ("12345678931", "exactly 10 digits"), ("12345678a3", "exactly 10 digits"),
    ("", "exactly 10 digits"),
])
def test_npi_refuses_wrong_length_letters_and_a_bad_check_digit(value, message):
    with pytest.raises(ValueError, match=message):
        rules.npi(value)


def test_npi_check_uses_the_80840_prefix():
    # 1234567893 passes Luhn only with the card-issuer prefix 80840; the bare number does not.
    assert rules.luhn_ok("80840" + "1234567893") and not rules.luhn_ok("1234567893")


@pytest.mark.parametrize("value,expected", [("22902", "22902"), ("22902-1234", "22902-1234"),
                                            ("229021234", "22902-1234"), (" 00501 ", "00501")])
def test_zip_accepts_five_or_nine_digits(value, expected):
    assert rules.zip_code(value) == expected


@pytest.mark.parametrize("value", ["2290", "229021", "22902-123", "ABCDE", "22902 1234", "22902-12345", ""])
def test_zip_refuses_anything_else(value):
    with pytest.raises(ValueError, match="ZIP code"):
        rules.zip_code(value)


@pytest.mark.parametrize("value,expected", [("VA", "VA"), ("va", "VA"), ("DC", "DC"), ("PR", "PR")])
def test_state_accepts_us_state_and_territory_codes(value, expected):
    assert rules.state(value) == expected


@pytest.mark.parametrize("value", ["XX", "Virginia", "V", "", "ON"])
def test_state_refuses_other_codes(value):
    with pytest.raises(ValueError, match="two-letter code"):
        rules.state(value)


@pytest.mark.parametrize("value,expected", [
    ("(434) 296-1234", "+1 434-296-1234"), ("434.296.1234", "+1 434-296-1234"), ("+1 202 456 1111", "+1 202-456-1111"),
])
def test_phone_accepts_real_numbers_and_normalises_them(value, expected):
    assert rules.phone(value) == expected


@pytest.mark.parametrize("value", ["123", "555-1234", "(000) 000-0000", "call us", "+1 111 111 1111"])
def test_phone_refuses_numbers_that_cannot_be_dialled(value):
    with pytest.raises(ValueError):
        rules.phone(value)


@pytest.mark.parametrize("value", ["https://harbor.example.org", "http://harbor.example.org/about?x=1",
                                   "HTTPS://HARBOR.EXAMPLE.ORG"])
def test_website_accepts_http_and_https(value):
    assert rules.website(value) == value


@pytest.mark.parametrize("value", [
    "javascript:alert(1)", "JavaScript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)", "ftp://harbor.example.org", "file:///etc/passwd", "harbor.example.org", "//harbor.example.org",
    "https://", "https://user:pw@harbor.example.org", "https://harbor.example.org/a b", "https://harbor.example.org:99999",
])
def test_website_refuses_other_schemes_and_malformed_addresses(value):
    with pytest.raises(ValueError):
        rules.website(value)


def test_expiry_must_be_after_today():
    assert rules.future_date(date.today() + timedelta(days=1)) == (date.today() + timedelta(days=1)).isoformat()
    for past in (date.today(), date.today() - timedelta(days=1), date(2001, 1, 1)):
        with pytest.raises(ValueError, match="has passed"):
            rules.future_date(past)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        rules.future_date("31/12/2099")


@pytest.mark.parametrize("value", ["admissions@harbor.example.org", "Intake+VA@Harbor.Example.org"])
def test_email_accepts_addresses(value):
    assert "@" in rules.email(value)


@pytest.mark.parametrize("value", ["not-an-address", "a@", "@harbor.example.org", "a b@harbor.example.org"])
def test_email_refuses_non_addresses(value):
    with pytest.raises(ValueError):
        rules.email(value)


# -- through the form -----------------------------------------------------------------------------


def _invalid(page: str, field_id: str) -> bool:
    """The field is marked invalid (to the eye and to assistive technology), described by its message, and the
    message follows it, inside its own form group."""
    name = re.escape(field_id)
    pattern = (rf'<(?:input|select)[^>]*aria-describedby="{name}-error" aria-invalid="true"'
               rf'[^>]*class="form-control is-invalid"[^>]*id="{name}"[^>]*>'
               rf'(?:(?!form-group).)*?<div id="{name}-error" class="invalid-feedback d-block">')
    return re.search(pattern, page, re.S) is not None


BAD_FORM_VALUES = [
    ("npi", "1234567890", "check digit does not match"),
    ("npi", "12345", "exactly 10 digits"),
    ("website", "javascript:alert(1)", "starting with https:// or http://"),
    ("website", "ftp://harbor.example.org", "starting with https:// or http://"),
    ("phone", "555-1234", "not a valid phone number"),
    ("email", "nobody", "valid e-mail address"),
    ("locations-0-zip", "2290", "ZIP code is 5 digits"),
    ("licences-0-expires_on", YESTERDAY, "This date has passed"),
    ("licences-0-expires_on", TODAY, "This date has passed"),
    ("accreditations-0-expires_on", YESTERDAY, "This date has passed"),
    ("principals-0-npi", "1111111111", "check digit does not match"),
    ("locations-0-latitude", "123", "Latitude is between"),
]


def test_a_bad_value_is_shown_beside_its_field_and_nothing_is_saved(client, session, make_account):
    # One account for all cases: password hashing dominates the cost of a test.
    account, provider, draft = provider_with_draft(session, make_account, client)
    before = dict(reload(session, draft).proposed)
    for field_id, value, message in BAD_FORM_VALUES:
        response = client.post(f"/portal/requests/{draft.id}/edit", data=listing_data(**{field_id: value}))
        page = response.get_data(as_text=True)
        assert response.status_code == 400, (field_id, value)
        assert message in page, (field_id, value)
        assert _invalid(page, field_id), f"{field_id} is not marked invalid next to its error"
        assert "nothing was saved" in page
        assert reload(session, draft).proposed == before, (field_id, value)


def test_a_value_outside_a_list_is_refused(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    cases = [("locations-0-state", "XX"), ("licences-0-state", "ZZ"), ("principals-0-role", "cfo"),
             ("levels_of_care", ["spa_weekend"]), ("services", ["kickbacks"]),
             ("harm_reduction", ["substance_use_treatment"]), ("populations", ["everyone"]),
             ("payment_accepted", ["crypto"])]
    for field_id, value in cases:
        response = client.post(f"/portal/requests/{draft.id}/edit", data=listing_data(**{field_id: value}))
        assert response.status_code == 400, field_id
        assert "Not a valid choice" in response.get_data(as_text=True) or "not a valid choice" in \
            response.get_data(as_text=True), field_id
        assert "npi" not in reload(session, draft).proposed


def test_a_half_filled_row_needs_its_required_fields(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    response = client.post(f"/portal/requests/{draft.id}/edit",
                           data=listing_data(**{"locations-1-street1": "2 High Street"}))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "City is required." in page and "ZIP code is required." in page and "State is required." in page


def test_the_service_refuses_bad_values_even_without_the_form(session, make_account):
    account, provider, draft = provider_with_draft(session, make_account)
    bad = [
        {"npi": "1234567890"}, {"website": "javascript:alert(1)"}, {"phone": "12"},
        {"locations": [{"street1": "1 Main", "city": "X", "state": "XX", "zip": "22902"}]},
        {"locations": [{"street1": "1 Main", "city": "X", "state": "VA", "zip": "1"}]},
        {"licences": [{"state": "VA", "number": "1", "licence_type": "t", "expires_on": "2001-01-01"}]},
        {"principals": [{"name": "A", "role": "cfo"}]}, {"levels_of_care": ["spa"]}, {"is_paid_referral": True},
        {"legal_name": ""},
    ]
    for proposed in bad:
        with pytest.raises(DomainError):
            listing_requests.save_draft(session, account, draft, {"legal_name": "L", "public_name": "P", **proposed})
        session.rollback()
    assert reload(session, draft).proposed == {"legal_name": "Harbor Recovery Center LLC",
                                               "public_name": "Harbor Recovery Center"}


def test_good_values_are_saved_normalised(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    response = client.post(f"/portal/requests/{draft.id}/edit", data=listing_data(
        npi="123456789-3", phone="434.296.1234", **{"locations-0-zip": "229021234", "locations-0-latitude": "38.03"}))
    assert response.status_code == 302
    proposed = reload(session, draft).proposed
    assert proposed["npi"] == VALID_NPI and proposed["phone"] == "+1 434-296-1234"
    assert proposed["locations"][0]["zip"] == "22902-1234" and proposed["locations"][0]["latitude"] == 38.03
    assert proposed["licences"][0]["levels_of_care"] == ["outpatient", "iop"]
    assert proposed["principals"][0] == {"name": "Dr. Ada Byron", "role": "medical_director", "npi": "1245319599"}
