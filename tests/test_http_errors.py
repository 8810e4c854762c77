"""Error responses keep what HTTP says they must carry: every 405 names the methods the address takes."""
from __future__ import annotations

from werkzeug.exceptions import MethodNotAllowed

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed(response) -> set[str]:
    return {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}


def test_a_405_from_the_api_is_json_and_names_the_allowed_methods(client):
    response = client.post("/api/v1/listings")
    assert response.status_code == 405
    assert allowed(response) == {"GET", "HEAD", "OPTIONS"}
    assert response.mimetype == "application/json"
    assert response.get_json() == {"error": {"status": 405, "message": "Method not allowed: This page does not "
                                             "accept that kind of request."}}


def test_a_405_from_a_page_names_the_allowed_methods(client):
    response = client.get("/logout")
    assert response.status_code == 405
    assert allowed(response) == {"POST", "OPTIONS"}
    assert "This page does not accept that kind of request." in response.get_data(as_text=True)


def test_every_405_carries_allow(app, client):
    adapter = app.url_map.bind("localhost")
    checked = 0
    for rule in app.url_map.iter_rules():
        url = adapter.build(rule.endpoint, {name: 1 for name in rule.arguments}, method=sorted(rule.methods)[0])
        for method in METHODS:
            try:
                adapter.match(url, method=method)
                continue
            except MethodNotAllowed as exc:
                expected = set(exc.valid_methods)
            except Exception:  # noqa: BLE001 -- a 404 or a redirect: not a 405 case
                continue
            response = client.open(url, method=method)
            assert response.status_code == 405, (method, url, response.status_code)
            assert allowed(response) == expected, (method, url, response.headers.get("Allow"))
            checked += 1
    assert checked > 100
