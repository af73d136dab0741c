"""Issue 13's account takeover, replayed through real HTTP against a running `kassa serve`
that mails through a real SMTP server: an attacker's organization "adds" a victim's e-mail
with a password of the attacker's choosing, the victim's real organization then adds the
same e-mail, and the attacker logs in as the victim. Adding a member is an invitation now;
nobody but the invitee chooses their password."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import PASSWORD, SmtpSink, unique_email
from tests.server import serve

ATTACKER_PASSWORD = "attacker chose this one"
VICTIM_PASSWORD = "the victim's own secret"


def _token(smtp: SmtpSink, to: str, count: int) -> str:
    body = smtp.wait_for(to, count)[count - 1].get_body(("plain",))
    assert body is not None
    match = re.search(r"[?&]token=(ivt_[A-Za-z0-9]+)", body.get_content())
    assert match
    return match.group(1)


def test_nobody_sets_a_password_for_someone_elses_email(
    database_url: str, tmp_path: Path, smtp: SmtpSink
) -> None:
    victim = unique_email("victim")
    with serve(database_url, tmp_path, worker=False, smtp_url=smtp.url) as server:
        http = server.client()
        attacker = http.post(
            "/v1/auth/signup",
            json={"org_name": "Evil", "email": unique_email("evil"), "password": PASSWORD},
        ).json()
        evil = {"Authorization": f"Bearer {attacker['access_token']}"}

        # the old way: create the victim's account with the attacker's password
        old = http.post(
            "/v1/members",
            json={"email": victim, "role": "owner", "password": ATTACKER_PASSWORD},
            headers=evil,
        )
        assert old.status_code == 405, old.text
        sneaky = http.post(
            "/v1/invitations",
            json={"email": victim, "role": "owner", "password": ATTACKER_PASSWORD},
            headers=evil,
        )
        assert sneaky.status_code == 422, sneaky.text
        assert sneaky.json()["errors"][0]["field"] == "password"
        # what remains possible: an invitation the victim may ignore
        invited = http.post(
            "/v1/invitations", json={"email": victim, "role": "owner"}, headers=evil
        )
        assert invited.status_code == 201, invited.text
        assert _token(smtp, victim, 1)  # the token went to the victim, not the attacker
        assert (
            http.post(
                "/v1/auth/login", json={"email": victim, "password": ATTACKER_PASSWORD}
            ).status_code
            == 401
        )

        # the victim's real organization invites them; they choose their own password
        real = http.post(
            "/v1/auth/signup",
            json={"org_name": "Real", "email": unique_email("boss"), "password": PASSWORD},
        ).json()
        boss = {"Authorization": f"Bearer {real['access_token']}"}
        assert (
            http.post(
                "/v1/invitations", json={"email": victim, "role": "staff"}, headers=boss
            ).status_code
            == 201
        )
        accepted = http.post(
            "/v1/invitations/accept",
            json={"token": _token(smtp, victim, 2), "password": VICTIM_PASSWORD},
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["org"]["id"] == real["org"]["id"]

        # the attacker cannot log in as the victim, in any organization
        for org in (None, attacker["org"]["id"], real["org"]["id"]):
            login = http.post(
                "/v1/auth/login",
                json={"email": victim, "password": ATTACKER_PASSWORD, "org": org},
            )
            assert login.status_code == 401, login.text
        # the victim belongs to their real organization only
        mine = http.post("/v1/auth/login", json={"email": victim, "password": VICTIM_PASSWORD})
        assert mine.status_code == 200, mine.text
        me = http.get("/v1/me", headers={"Authorization": f"Bearer {mine.json()['access_token']}"})
        assert me.json()["org"]["id"] == real["org"]["id"]
        assert me.json()["user"]["email_verified_at"] is not None
        # and the attacker's invitation, were it accepted, needs the victim logged in
        pending = http.get("/v1/invitations", headers=evil).json()["data"]
        assert [i["status"] for i in pending] == ["pending"]
        stolen = http.post(
            "/v1/invitations/accept",
            json={"token": _token(smtp, victim, 1), "password": ATTACKER_PASSWORD},
        )
        assert stolen.status_code == 401 and stolen.json()["code"] == "login_required"
        http.close()
