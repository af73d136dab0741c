from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

from kassa.core.context import Role
from kassa.core.schemas import Strict
from kassa.orgs.schemas import Org, check_country, check_currency, check_timezone

Password = str  # length and content are checked by identity.rules.password_problem


class SignupIn(Strict):
    org_name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    password: Password = Field(min_length=1, max_length=1024)
    name: str | None = Field(default=None, max_length=200)
    country: str | None = None
    currency: str | None = None
    timezone: str | None = None

    _country = field_validator("country")(check_country)
    _currency = field_validator("currency")(check_currency)
    _timezone = field_validator("timezone")(check_timezone)


class LoginIn(Strict):
    email: EmailStr
    password: str = Field(min_length=1, max_length=1024)
    org: str | None = Field(default=None, description="Organization id, when you belong to several")


class RefreshIn(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")


class User(BaseModel):
    id: str
    object: Literal["user"] = "user"
    email: str
    name: str | None
    created_at: datetime
    email_verified_at: datetime | None = Field(
        default=None,
        description="When the user proved they receive mail at `email` (verification link, "
        "invitation or password reset); null until then. Unverified users can use Kassa.",
    )


class SignupOut(TokenPair):
    org: Org
    user: User


class CheckYourEmail(BaseModel):
    """The answer that says nothing about whether an account exists."""

    status: Literal["check_your_email"] = "check_your_email"
    detail: str


class OrgIn(Strict):
    org_name: str = Field(min_length=1, max_length=200)
    country: str | None = None
    currency: str | None = None
    timezone: str | None = None

    _country = field_validator("country")(check_country)
    _currency = field_validator("currency")(check_currency)
    _timezone = field_validator("timezone")(check_timezone)


class TokenIn(Strict):
    token: str = Field(min_length=1, max_length=200)


class ForgotPasswordIn(Strict):
    email: EmailStr


class ResetPasswordIn(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: Password = Field(min_length=1, max_length=1024)


class InvitationIn(Strict):
    email: EmailStr
    role: Role
    name: str | None = Field(default=None, max_length=200)


class Invitation(BaseModel):
    id: str
    object: Literal["invitation"] = "invitation"
    email: str
    role: Role
    name: str | None
    status: Literal["pending", "accepted", "revoked", "expired"]
    invited_by: str | None = Field(description="User id of the member who invited")
    created_at: datetime
    sent_at: datetime = Field(description="When the current token was mailed")
    expires_at: datetime
    accepted_at: datetime | None
    accepted_by: str | None
    revoked_at: datetime | None


class AcceptInvitationIn(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: Password | None = Field(
        default=None,
        max_length=1024,
        description="Required when the e-mail has no account yet: your new password",
    )
    name: str | None = Field(default=None, max_length=200)


class InvitationAccepted(TokenPair):
    """Tokens for the organization just joined."""

    org: Org
    user: User
    role: Role


class ApiKeyRef(BaseModel):
    id: str
    name: str
    prefix: str


class Me(BaseModel):
    user: User | None
    org: Org
    role: Role
    api_key: ApiKeyRef | None = None


class MemberPatch(Strict):
    role: Role


class Member(BaseModel):
    id: str = Field(description="The member's user id")
    object: Literal["member"] = "member"
    email: str
    name: str | None
    role: Role
    created_at: datetime


class ApiKeyIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    mode: Literal["test", "live"] | None = None


class ApiKey(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    mode: Literal["test", "live"]
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The full key. Shown only in this response; store it now.")


class Jwk(BaseModel):
    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str
    y: str
    kid: str
    use: Literal["sig"]
    alg: Literal["ES256"]


class Jwks(BaseModel):
    keys: list[Jwk]
