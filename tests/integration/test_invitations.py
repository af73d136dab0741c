"""Invitations: one-time, expiring, mailed; the invitee alone chooses their password, and
an existing account joins only while logged in as itself."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from kassa.identity.models import Invitation
from kassa.identity.tokens import sha256_hex
from kassa.runtime import Runtime
from tests.conftest import (
    PASSWORD,
    Tenant,
    add_member,
    api_key,
    last_token,
    signup,
    unique_email,
)


def _invite(client: TestClient, tenant: Tenant, email: str, role: str = "staff") -> dict:
    response = client.post(
        "/v1/invitations", json={"email": email, "role": role}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _accept(client: TestClient, token: str, **extra: object) -> tuple[int, dict]:
    response = client.post("/v1/invitations/accept", json={"token": token, **extra})
    return response.status_code, response.json()


def test_no_route_sets_a_password_for_someone_else(client: TestClient, tenant: Tenant) -> None:
    email = unique_email("new")
    old = client.post(
        "/v1/members",
        json={"email": email, "role": "staff", "password": PASSWORD},
        headers=tenant.headers,
    )
    assert old.status_code == 405
    invited = _invite(client, tenant, email)
    assert invited["status"] == "pending" and invited["email"] == email
    # until accepted: no account, no membership
    login = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401
    members = client.get("/v1/members", headers=tenant.headers).json()["data"]
    assert email not in {m["email"] for m in members}


def test_a_new_user_chooses_their_password_when_accepting(
    client: TestClient, tenant: Tenant
) -> None:
    email = unique_email("new")
    invited = _invite(client, tenant, email, "viewer")
    token = last_token(client, email, "ivt_")
    assert sha256_hex(token) not in str(invited)  # neither token nor hash is shown
    status, body = _accept(client, token)
    assert status == 422 and body["errors"][0]["field"] == "password"
    status, body = _accept(client, token, password="short")
    assert status == 422 and body["code"] == "weak_password"
    status, body = _accept(client, token, password=PASSWORD, name="Vera")
    assert status == 200, body
    assert body["org"]["id"] == tenant.org_id and body["role"] == "viewer"
    assert body["user"]["name"] == "Vera" and body["user"]["email_verified_at"] is not None
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["role"] == "viewer"
    # one-time
    status, again = _accept(client, token, password="another password 123")
    assert status == 422 and again["code"] == "invalid_or_expired_token"
    shown = client.get(f"/v1/invitations/{invited['id']}", headers=tenant.headers).json()
    assert shown["status"] == "accepted" and shown["accepted_by"] == body["user"]["id"]


def test_an_existing_user_joins_only_while_logged_in_as_themselves(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    _invite(client, tenant, other_tenant.email, "admin")
    token = last_token(client, other_tenant.email, "ivt_")
    status, body = _accept(client, token, password="attacker's choice 1")
    assert status == 401 and body["code"] == "login_required"
    stranger = signup(client, name="Stranger")
    response = client.post(
        "/v1/invitations/accept", json={"token": token}, headers=stranger.headers
    )
    assert response.status_code == 403
    assert response.json()["code"] == "invitation_for_another_account"
    key = api_key(client, other_tenant)["key"]
    with_key = client.post(
        "/v1/invitations/accept", json={"token": token}, headers={"Authorization": f"Bearer {key}"}
    )
    assert with_key.status_code == 403
    # not yet a member: the login into that org is refused, the password is unchanged
    refused = client.post(
        "/v1/auth/login",
        json={"email": other_tenant.email, "password": PASSWORD, "org": tenant.org_id},
    )
    assert refused.status_code == 403
    response = client.post(
        "/v1/invitations/accept", json={"token": token}, headers=other_tenant.headers
    )
    assert response.status_code == 200, response.text
    joined = response.json()
    assert joined["org"]["id"] == tenant.org_id and joined["user"]["id"] == other_tenant.user_id
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {joined['access_token']}"})
    assert me.json()["org"]["id"] == tenant.org_id and me.json()["role"] == "admin"


def test_revoke_resend_and_expiry_kill_tokens(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    email = unique_email("invitee")
    invited = _invite(client, tenant, email)
    first = last_token(client, email, "ivt_")
    again = client.post(
        "/v1/invitations", json={"email": email, "role": "admin"}, headers=tenant.headers
    )
    assert again.status_code == 409 and again.json()["code"] == "invitation_pending"

    resent = client.post(f"/v1/invitations/{invited['id']}/resend", headers=tenant.headers)
    assert resent.status_code == 200 and resent.json()["status"] == "pending"
    second = last_token(client, email, "ivt_")
    assert second != first
    assert _accept(client, first, password=PASSWORD)[0] == 422

    revoked = client.delete(f"/v1/invitations/{invited['id']}", headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert _accept(client, second, password=PASSWORD)[0] == 422
    dead = client.post(f"/v1/invitations/{invited['id']}/resend", headers=tenant.headers)
    assert dead.status_code == 409 and dead.json()["code"] == "invitation_not_pending"

    late = _invite(client, tenant, email)  # a revoked invitation does not block a new one
    token = last_token(client, email, "ivt_")
    with rt.db.transaction() as session:
        session.execute(text("SELECT set_config('app.org_id', :o, true)"), {"o": tenant.org_id})
        row = session.scalars(select(Invitation).where(Invitation.id == late["id"])).one()
        row.expires_at = row.created_at - timedelta(seconds=1)
    status, body = _accept(client, token, password=PASSWORD)
    assert status == 422 and body["errors"][0]["field"] == "token"
    shown = client.get(f"/v1/invitations/{late['id']}", headers=tenant.headers).json()
    assert shown["status"] == "expired"


def test_invitation_ttl_is_a_setting(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    invited = _invite(client, tenant, unique_email("ttl"))
    from datetime import datetime

    created = datetime.fromisoformat(invited["created_at"])
    expires = datetime.fromisoformat(invited["expires_at"])
    assert (
        expires - created
        == timedelta(hours=rt.settings.invitation_ttl_hours)
        == timedelta(hours=72)
    )


def test_role_rules_hold_for_invitations(client: TestClient, tenant: Tenant) -> None:
    admin = add_member(client, tenant, "admin")
    staff = add_member(client, tenant, "staff")
    owner_by_admin = client.post(
        "/v1/invitations", json={"email": unique_email(), "role": "owner"}, headers=admin.headers
    )
    assert owner_by_admin.status_code == 403
    by_staff = client.post(
        "/v1/invitations", json={"email": unique_email(), "role": "viewer"}, headers=staff.headers
    )
    assert by_staff.status_code == 403
    key = api_key(client, tenant)["key"]
    by_key = client.post(
        "/v1/invitations",
        json={"email": unique_email(), "role": "viewer"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert by_key.status_code == 403
    assert client.get("/v1/invitations", headers=staff.headers).status_code == 403
    member = client.post(
        "/v1/invitations", json={"email": staff.email, "role": "admin"}, headers=tenant.headers
    )
    assert member.status_code == 409 and member.json()["code"] == "already_member"
    owner_invite = _invite(client, tenant, unique_email("owner2"), "owner")
    revoke = client.delete(f"/v1/invitations/{owner_invite['id']}", headers=admin.headers)
    assert revoke.status_code == 403


def test_invitation_list_pages_and_shows_only_the_callers_org(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = [_invite(client, tenant, unique_email("p"))["id"] for _ in range(3)]
    _invite(client, other_tenant, unique_email("theirs"))
    first = client.get("/v1/invitations?limit=2", headers=tenant.headers).json()
    assert first["has_more"] is True
    rest = client.get(
        f"/v1/invitations?limit=2&cursor={first['next_cursor']}", headers=tenant.headers
    ).json()
    assert [i["id"] for i in first["data"] + rest["data"]] == mine[::-1]
    assert rest["has_more"] is False
