from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.identity.models import RefreshToken, SigningKey
from kassa.runtime import Runtime
from tests.conftest import PASSWORD, Tenant, add_member, api_key, signup, unique_email


def test_signup_login_refresh_and_reuse_revokes_the_family(client: TestClient) -> None:
    tenant = signup(client)
    login = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert login.status_code == 200
    first = login.json()
    assert first["token_type"] == "bearer"
    assert first["expires_in"] == 900

    rotated = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == tenant.email
    assert me.json()["role"] == "owner"

    reused = client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    assert reused.headers["content-type"] == "application/problem+json"

    newest = client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401
    assert newest.json()["code"] == "invalid_token"


def test_other_sessions_survive_a_revoked_family(client: TestClient) -> None:
    tenant = signup(client)
    spent = tenant.refresh_token
    assert client.post("/v1/auth/refresh", json={"refresh_token": spent}).status_code == 200
    other = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD}).json()
    assert client.post("/v1/auth/refresh", json={"refresh_token": spent}).status_code == 401
    again = client.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert again.status_code == 200


def test_logout_ends_the_session(client: TestClient) -> None:
    tenant = signup(client)
    assert (
        client.post("/v1/auth/logout", json={"refresh_token": tenant.refresh_token}).status_code
        == 204
    )
    response = client.post("/v1/auth/refresh", json={"refresh_token": tenant.refresh_token})
    assert response.status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient) -> None:
    tenant = signup(client)
    wrong = client.post(
        "/v1/auth/login", json={"email": tenant.email, "password": "nope-nope-nope"}
    )
    unknown = client.post("/v1/auth/login", json={"email": unique_email(), "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"


def test_account_locks_after_repeated_failures(client: TestClient, rt: Runtime) -> None:
    tenant = signup(client)
    for _ in range(rt.settings.login_max_failures):
        bad = client.post(
            "/v1/auth/login", json={"email": tenant.email, "password": "wrong-password!"}
        )
        assert bad.status_code == 401
    locked = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["code"] == "account_locked"
    assert 0 < int(locked.headers["Retry-After"]) <= rt.settings.login_lockout_seconds


def test_success_resets_the_failure_count(client: TestClient, rt: Runtime) -> None:
    tenant = signup(client)
    for _ in range(rt.settings.login_max_failures - 1):
        client.post("/v1/auth/login", json={"email": tenant.email, "password": "wrong-password!"})
    assert (
        client.post(
            "/v1/auth/login", json={"email": tenant.email, "password": PASSWORD}
        ).status_code
        == 200
    )
    for _ in range(rt.settings.login_max_failures - 1):
        client.post("/v1/auth/login", json={"email": tenant.email, "password": "wrong-password!"})
    assert (
        client.post(
            "/v1/auth/login", json={"email": tenant.email, "password": PASSWORD}
        ).status_code
        == 200
    )


def test_signup_validation_names_fields(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/signup",
        json={"org_name": "", "email": "not-an-email", "password": PASSWORD, "currency": "xyz"},
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"org_name", "email", "currency"}
    weak = client.post(
        "/v1/auth/signup", json={"org_name": "A", "email": unique_email(), "password": "short"}
    )
    assert weak.status_code == 422
    assert weak.json()["errors"] == [
        {"field": "password", "message": "must be at least 10 characters"}
    ]
    assert weak.json()["code"] == "weak_password"


def test_existing_user_creates_a_second_org_and_must_choose_at_login(client: TestClient) -> None:
    first = signup(client)
    created = client.post("/v1/orgs", json={"org_name": "Second Org"}, headers=first.headers)
    assert created.status_code == 201, created.text
    second = created.json()
    assert second["user"]["id"] == first.user_id and second["org"]["id"] != first.org_id
    second_org = second["org"]["id"]
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.json()["org"]["id"] == second_org and me.json()["role"] == "owner"
    ambiguous = client.post("/v1/auth/login", json={"email": first.email, "password": PASSWORD})
    assert ambiguous.status_code == 422
    assert ambiguous.json()["code"] == "org_required"
    assert set(ambiguous.json()["orgs"]) == {first.org_id, second_org}
    chosen = client.post(
        "/v1/auth/login", json={"email": first.email, "password": PASSWORD, "org": second_org}
    )
    assert chosen.status_code == 200
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {chosen.json()['access_token']}"})
    assert me.json()["org"]["id"] == second_org


def test_viewer_cannot_create_members_or_keys(client: TestClient, tenant: Tenant) -> None:
    viewer = add_member(client, tenant, "viewer")
    members_before = client.get("/v1/members", headers=tenant.headers).json()["data"]
    response = client.post(
        "/v1/invitations",
        json={"email": unique_email(), "role": "staff"},
        headers=viewer.headers,
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_role"
    assert (
        client.post("/v1/api_keys", json={"name": "x"}, headers=viewer.headers).status_code == 403
    )
    assert client.get("/v1/members", headers=tenant.headers).json()["data"] == members_before
    keys = client.get("/v1/api_keys", headers=tenant.headers).json()["data"]
    assert keys == []
    assert client.get("/v1/me", headers=viewer.headers).json()["role"] == "viewer"


def test_admin_cannot_grant_or_touch_owners(client: TestClient, tenant: Tenant) -> None:
    admin = add_member(client, tenant, "admin")
    grant = client.post(
        "/v1/invitations", json={"email": unique_email(), "role": "owner"}, headers=admin.headers
    )
    assert grant.status_code == 403
    demote = client.patch(
        f"/v1/members/{tenant.user_id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert demote.status_code == 403
    staff = add_member(client, tenant, "staff")
    promote = client.patch(
        f"/v1/members/{staff.user_id}", json={"role": "admin"}, headers=admin.headers
    )
    assert promote.status_code == 200 and promote.json()["role"] == "admin"


def test_last_owner_cannot_leave(client: TestClient, tenant: Tenant) -> None:
    response = client.delete(f"/v1/members/{tenant.user_id}", headers=tenant.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "last_owner"
    co_owner = add_member(client, tenant, "owner")
    assert (
        client.delete(f"/v1/members/{tenant.user_id}", headers=co_owner.headers).status_code == 204
    )
    assert client.get("/v1/me", headers=tenant.headers).status_code == 401


def test_api_key_lifecycle(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    created = api_key(client, tenant)
    assert created["key"].startswith("sk_test_") and created["prefix"] == created["key"][:12]
    headers = {"Authorization": f"Bearer {created['key']}"}
    me = client.get("/v1/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["api_key"]["id"] == created["id"] and me.json()["user"] is None
    listed = client.get("/v1/api_keys", headers=tenant.headers).json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    assert listed[0]["last_used_at"] is not None
    # API keys act for the org but cannot manage keys or members
    assert client.post("/v1/api_keys", json={"name": "y"}, headers=headers).status_code == 403

    revoked = client.delete(f"/v1/api_keys/{created['id']}", headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    after = client.get("/v1/me", headers=headers)
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_api_key"
    live = client.post(
        "/v1/api_keys", json={"name": "live", "mode": "live"}, headers=tenant.headers
    )
    assert live.status_code == 422 and live.json()["errors"][0]["field"] == "mode"


def test_garbage_tokens_are_401(client: TestClient) -> None:
    for token in ("nonsense", "sk_test_doesnotexist", "eyJhbGciOiJFUzI1NiJ9.e30.sig"):
        response = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/me").status_code == 401


def test_key_rotation_keeps_old_tokens_valid_until_they_expire(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    old_kid = client.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    with rt.db.transaction() as session:
        new_kid = rt.keyring.rotate(session)
    jwks = client.get("/.well-known/jwks.json").json()["keys"]
    kids = [k["kid"] for k in jwks]
    assert kids[0] == new_kid and old_kid in kids
    assert all(k["kty"] == "EC" and k["alg"] == "ES256" and "d" not in k for k in jwks)
    assert client.get("/v1/me", headers=tenant.headers).status_code == 200  # signed by old key
    fresh = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD}).json()
    import jwt

    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    # once the old key's publication window has passed, its tokens are refused
    with rt.db.transaction() as session:
        old = session.get(SigningKey, old_kid)
        assert old is not None and old.publish_until is not None
        assert old.publish_until - old.retired_at >= timedelta(
            seconds=rt.settings.access_token_ttl_seconds
        )  # type: ignore[operator]
        old.publish_until = old.retired_at
    rt.keyring._loaded_at = 0.0
    assert client.get("/v1/me", headers=tenant.headers).status_code == 401
    assert old_kid not in [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]


def test_refresh_tokens_are_stored_hashed(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    with rt.db.transaction() as session:
        hashes = session.scalars(
            select(RefreshToken.token_hash).where(RefreshToken.user_id == tenant.user_id)
        ).all()
    assert len(hashes) == 1 and tenant.refresh_token not in hashes[0]


def test_org_settings(client: TestClient, tenant: Tenant) -> None:
    org = client.get("/v1/org", headers=tenant.headers).json()
    assert org["mode"] == "test" and org["invoice_prefix"] == "ACME" and org["currency"] == "eur"
    assert org["dunning"] == {"retry_after_hours": [1, 24, 72], "suspend_after_failures": 3}
    patched = client.patch(
        "/v1/org",
        json={"timezone": "Europe/Vienna", "country": "at", "tax_ruleset": "eu_vat",
              "dunning": {"retry_after_hours": [2, 48], "suspend_after_failures": 2}},
        headers=tenant.headers,
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    assert patched.json()["country"] == "AT" and patched.json()["dunning"]["retry_after_hours"] == [
        2,
        48,
    ]
    bad = client.patch(
        "/v1/org",
        json={"timezone": "Mars/Base", "dunning": {"retry_after_hours": [5, 1]}},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"timezone", "dunning.retry_after_hours"}
    staff = add_member(client, tenant, "staff")
    assert client.patch("/v1/org", json={"name": "x"}, headers=staff.headers).status_code == 403
    assert client.get("/v1/org", headers=tenant.headers).json()["name"] == "Acme Rentals"


def test_an_active_key_past_its_age_is_rotated(rt: Runtime) -> None:
    def active() -> SigningKey:
        with rt.db.transaction() as session:
            return session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))).one()

    with rt.db.transaction() as session:
        rt.keyring.ensure_active(session)
    before = active()
    with rt.db.transaction() as session:
        rt.keyring.ensure_active(session)  # young enough: kept
    assert active().kid == before.kid
    with rt.db.transaction() as session:
        row = session.get(SigningKey, before.kid)
        assert row is not None
        row.created_at = row.created_at - rt.keyring.rotate_after
    with rt.db.transaction() as session:
        rt.keyring.ensure_active(session)
    assert active().kid != before.kid


def test_member_list_pages_newest_first_without_gaps(client: TestClient, tenant: Tenant) -> None:
    added = [add_member(client, tenant, "viewer").user_id for _ in range(3)]
    first = client.get("/v1/members?limit=2", headers=tenant.headers).json()
    assert first["object"] == "list" and first["has_more"] is True
    second = client.get(
        f"/v1/members?limit=2&cursor={first['next_cursor']}", headers=tenant.headers
    ).json()
    assert second["has_more"] is False and second["next_cursor"] is None
    ids = [m["id"] for m in first["data"] + second["data"]]
    assert ids == [*reversed(added), tenant.user_id]
    bad = client.get("/v1/members?cursor=garbage", headers=tenant.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
