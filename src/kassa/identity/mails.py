"""The identity e-mails (invitation, verification, password reset, signup of an existing
account): what they say and where their links point. Pure: building a message sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote

from kassa.integrations.email import Message, Postman


@dataclass(frozen=True)
class MailContext:
    """What one-time mails need: who delivers them, where links point, how long they live."""

    postman: Postman
    public_url: str
    invitation_ttl: timedelta
    verification_ttl: timedelta
    reset_ttl: timedelta
    # Whether an unauthenticated request may mail this address now (a per-address limit,
    # so nobody can flood a mailbox through forgot_password or signup).
    may_mail: Callable[[str], bool] = field(default=lambda address: True)

    def link(self, path: str, token: str) -> str:
        return f"{self.public_url.rstrip('/')}{path}?token={quote(token)}"


def _hours(ttl: timedelta) -> str:
    minutes = int(ttl.total_seconds() // 60)
    return f"{minutes // 60} hours" if minutes % 60 == 0 else f"{minutes} minutes"


def invitation(
    ctx: MailContext, to: str, org_name: str, role: str, inviter: str | None, token: str
) -> Message:
    who = inviter or "A member"
    return Message(
        to=to,
        subject=f"You are invited to {org_name} on Kassa",
        text=(
            f"{who} invited you to join {org_name} on Kassa as {role}.\n\n"
            f"Accept the invitation: {ctx.link('/invitations/accept', token)}\n\n"
            f"Invitation token: {token}\n"
            "(API: POST /v1/invitations/accept with this token. If you already have a Kassa\n"
            "account, accept while logged in as it; otherwise choose your password there.)\n\n"
            f"The invitation expires in {_hours(ctx.invitation_ttl)}. If you did not expect\n"
            "it, ignore this message: nothing happens until you accept.\n"
        ),
    )


def verification(ctx: MailContext, to: str, token: str) -> Message:
    return Message(
        to=to,
        subject="Confirm your e-mail address for Kassa",
        text=(
            f"Confirm that this address is yours: {ctx.link('/verify-email', token)}\n\n"
            f"Verification token: {token}\n(API: POST /v1/auth/verify_email with this token.)\n\n"
            f"The link expires in {_hours(ctx.verification_ttl)}.\n"
        ),
    )


def password_reset(ctx: MailContext, to: str, token: str) -> Message:
    return Message(
        to=to,
        subject="Reset your Kassa password",
        text=(
            "Someone (hopefully you) asked to reset the password of this Kassa account.\n\n"
            f"Choose a new password: {ctx.link('/reset-password', token)}\n\n"
            f"Reset token: {token}\n(API: POST /v1/auth/reset_password with this token.)\n\n"
            f"The link expires in {_hours(ctx.reset_ttl)} and works once. Resetting ends every\n"
            "session of the account. If you did not ask for this, ignore this message.\n"
        ),
    )


def signup_existing(ctx: MailContext, to: str) -> Message:
    return Message(
        to=to,
        subject="Someone tried to sign up to Kassa with your address",
        text=(
            "Someone tried to create a Kassa organization with this e-mail address, which\n"
            "already has an account. No organization was created.\n\n"
            "If it was you: log in, then create the organization from your account\n"
            "(API: POST /v1/orgs). Forgot your password? Reset it at\n"
            f"{ctx.public_url.rstrip('/')}/forgot-password (API: POST /v1/auth/forgot_password).\n"
            "\nIf it was not you, ignore this message.\n"
        ),
    )
