"""Rate limits switched off (RATELIMIT_ENABLED=False): every limited route still answers as it would."""
from __future__ import annotations

import gc
from datetime import timedelta

from backoffice.models import ListingStatus, Role, VerificationStatus, utcnow
from backoffice.ratelimit import LIMITS, READ_LIMITS
from tests.conftest import login


def test_with_limits_off_every_api_route_and_the_sign_in_answer(make_app, make_account, make_provider):
    app = make_app(RATELIMIT_ENABLED=False)
    with app.app_context():
        gc.collect()  # whatever only the wrapped views still point at is gone now, as in a long-running process
        now = utcnow()
        provider = make_provider(public_name="Harbor Lights", listing_status=ListingStatus.LISTED,
                                 verification_status=VerificationStatus.VERIFIED, verified_at=now - timedelta(days=1),
                                 verified_until=now + timedelta(days=300))
        client = app.test_client()

        api_rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith(("api.", "well_known."))]
        assert {rule.endpoint for rule in api_rules} == set(READ_LIMITS)
        feed = client.get("/api/v1/listings")
        assert feed.status_code == 200, feed.data[:300]
        assert [item["public_name"] for item in feed.get_json()["listings"]] == ["Harbor Lights"]
        receipt = client.get(f"/api/v1/listings/{provider.id}/verification")
        assert receipt.status_code == 200 and receipt.get_json()["public_name"] == "Harbor Lights"
        document = client.get("/api/v1/openapi.json")
        assert document.status_code == 200 and "/api/v1/listings" in document.get_json()["paths"]
        assert client.get("/api/v1/receipts/status").mimetype == "application/jose"
        assert client.get("/.well-known/jwks.json").get_json()["keys"][0]["crv"] == "Ed25519"

        # Every page with a sign-in style limit opens (limits apply to POST, but the wrapper runs on GET too).
        for endpoint in LIMITS:
            rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
            url = rule.rule.replace("<token>", "not-a-token")
            response = client.get(url)
            assert response.status_code < 500, (url, response.status_code, response.data[:300])

        refused = client.post("/login", data={"email": "nobody@example.org", "password": "wrong password"})
        assert "That e-mail address and password do not match an active account." in refused.get_data(as_text=True)
        researcher = make_account(Role.RESEARCHER)
        signed_in = login(client, researcher)
        assert signed_in.status_code == 302 and signed_in.headers["Location"].startswith("/admin")
        dashboard = client.get(signed_in.headers["Location"], follow_redirects=True)
        assert dashboard.status_code == 200 and researcher.email in dashboard.get_data(as_text=True)
