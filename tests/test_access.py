"""Deny by default: sign-in, redirects, sessions and the pages whose rules are fixed here (the route-by-route
matrix over every route and role is tests/test_route_matrix.py)."""
import pytest

from backoffice.auth.redirects import is_safe_path
from backoffice.models import Role
from tests.conftest import login


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.AUDITOR], ids=lambda r: r.value)
def test_detail_pages_follow_the_same_rules(client, make_account, make_provider, role):
    provider = make_provider()
    login(client, make_account(role))
    assert client.get(f"/admin/providers/details/?id={provider.id}").status_code == 200
    audit_detail = client.get("/admin/audit/event/1")
    assert audit_detail.status_code == (200 if role == Role.AUDITOR else 403)


def test_staff_views_cannot_create_edit_or_delete(app, client, session, make_account, make_provider):
    from backoffice.models import AuditEvent, Provider

    provider = make_provider(public_name="Original Name")
    login(client, make_account(Role.RESEARCH_LEAD))
    events_before = session.query(AuditEvent).count()
    client.post(f"/admin/providers/edit/?id={provider.id}", data={"public_name": "Changed"})
    client.post("/admin/providers/new/", data={"public_name": "Injected", "legal_name": "Injected"})
    client.post("/admin/providers/delete/", data={"id": provider.id})
    client.post("/admin/providers/action/", data={"action": "delete", "rowid": provider.id})
    session.expire_all()
    assert session.get(Provider, provider.id).public_name == "Original Name"
    assert session.query(Provider).count() == 1
    assert session.query(AuditEvent).count() == events_before


def test_browse_views_answer_403_to_every_write_endpoint(client, make_account, make_provider):
    provider = make_provider()
    login(client, make_account(Role.RESEARCH_LEAD))
    for url in (f"/admin/providers/edit/?id={provider.id}", "/admin/providers/new/",
                "/admin/providers/export/csv/", "/admin/submissions/new/"):
        assert client.get(url).status_code == 403, url
    for url in ("/admin/providers/delete/", "/admin/providers/action/", "/admin/providers/ajax/update/",
                f"/admin/providers/edit/?id={provider.id}"):
        assert client.post(url, data={"id": provider.id, "rowid": provider.id, "action": "delete"}).status_code == 403


def test_login_redirects_only_to_local_paths(client, make_account):
    account = make_account(Role.RESEARCHER)
    assert login(client, account, next_url="/admin/providers/").headers["Location"] == "/admin/providers/"
    client.post("/logout")
    response = login(client, account, next_url="//evil.example/")
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize("target", [
    "//evil.example", "/\\evil.example", "\\\\evil.example", "http://evil.example/", "https:evil.example",
    "http:///evil.example", "javascript:alert(1)", "/path\x00", "/ok\r\nSet-Cookie: x=1", "", None,
    "evil.example", " //evil.example",
])
def test_unsafe_redirect_targets_are_refused(target):
    assert not is_safe_path(target)


@pytest.mark.parametrize("target", ["/admin/", "/portal/?tab=requests", "/admin/providers/details/?id=3#x"])
def test_local_redirect_targets_are_allowed(target):
    assert is_safe_path(target)


def test_wrong_password_gives_one_message_for_unknown_and_known_accounts(client, make_account):
    account = make_account(Role.RESEARCHER)
    wrong = client.post("/login", data={"email": account.email, "password": "not the password"})
    unknown = client.post("/login", data={"email": "nobody@example.org", "password": "not the password"})
    message = "That e-mail address and password do not match an active account."
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_inactive_accounts_cannot_sign_in(client, session, make_account):
    account = make_account(Role.RESEARCHER)
    account.is_active = False
    session.commit()
    login(client, account)
    assert client.get("/admin/").status_code == 302


def test_logout_ends_every_session_of_the_account(app, make_account):
    account = make_account(Role.RESEARCHER)
    first, second = app.test_client(), app.test_client()
    login(first, account)
    login(second, account)
    assert second.get("/admin/").status_code == 200
    first.post("/logout")
    assert second.get("/admin/").status_code == 302


def test_logout_needs_post(client, make_account):
    login(client, make_account(Role.RESEARCHER))
    assert client.get("/logout").status_code == 405
    assert client.get("/admin/").status_code == 200


def test_root_sends_each_kind_of_user_home(client, make_account):
    assert client.get("/").headers["Location"] == "/login"
    login(client, make_account(Role.PROVIDER))
    assert client.get("/").headers["Location"] == "/portal/"


def test_a_route_that_names_no_roles_is_closed_to_everyone(make_app, make_account):
    app = make_app()
    app.add_url_rule("/forgotten", "forgotten", lambda: "secret")
    with app.app_context():
        client = app.test_client()
        assert client.get("/forgotten").status_code == 403
        login(client, make_account(Role.RESEARCH_LEAD))
        assert client.get("/forgotten").status_code == 403


@pytest.mark.parametrize("url", [
    "/admin/review/case/99999999999999999999", "/admin/audit/event/99999999999999999999",
    "/admin/audit/provider/99999999999999999999", "/api/v1/listings/99999999999999999999/verification",
])
def test_ids_beyond_the_database_range_are_404_not_500(client, make_account, url):
    login(client, make_account(Role.AUDITOR))
    assert client.get(url).status_code == 404


def test_oversized_numbers_in_queries_get_a_message_not_a_500(client, make_account):
    import base64

    login(client, make_account(Role.AUDITOR))
    assert client.get("/admin/audit/?provider_id=99999999999999999999").status_code == 400
    assert client.get("/admin/audit/?before=99999999999999999999").status_code == 200
    cursor = base64.urlsafe_b64encode(b"v1:99999999999999999999").decode().rstrip("=")
    response = client.get(f"/api/v1/listings?cursor={cursor}")
    assert response.status_code == 400 and "cursor" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example", "http://evil.example/", "javascript:alert(1)",
                                    "http://localhost/admin/", "/ok\tjavascript:x"])
def test_admin_back_links_take_only_local_paths(client, make_account, make_provider, target):
    """Flask-Admin's `url=` parameter goes through the same safe-redirect helper as `next`."""
    from urllib.parse import quote

    provider = make_provider()
    login(client, make_account(Role.RESEARCHER))
    page = client.get(f"/admin/providers/details/?id={provider.id}&url={quote(target)}").get_data(as_text=True)
    assert target not in page and quote(target) not in page
    local = client.get(f"/admin/providers/details/?id={provider.id}&url=/admin/providers/%3Fsearch%3Dx")
    assert 'href="/admin/providers/?search=x"' in local.get_data(as_text=True)
