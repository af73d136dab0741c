from __future__ import annotations

from typing import ClassVar

from kassa.core.errors import Conflict, Forbidden, KassaError, NotFound, RateLimited, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "E-mail or password is wrong"
    persist_effects: ClassVar[bool] = True  # the failed attempt must be counted


class AccountLocked(RateLimited):
    code = "account_locked"
    title = "Too many failed logins; the account is locked for a while"


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "The token is invalid or expired"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    title = "This refresh token was already used; its whole session has been revoked"
    persist_effects: ClassVar[bool] = True  # the family revocation must stick


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"
    title = "The API key is invalid or revoked"


class SignupDisabled(Forbidden):
    code = "signup_disabled"
    title = "Self-service signup is turned off on this installation"


class InsufficientRole(Forbidden):
    code = "insufficient_role"
    title = "Your role does not allow this"


class NoMembership(Forbidden):
    code = "no_membership"
    title = "You are not a member of that organization"


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "No such member"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    title = "No such API key"


class AlreadyMember(Conflict):
    code = "already_member"
    title = "That user is already a member"


class LastOwner(Conflict):
    code = "last_owner"
    title = "An organization needs at least one owner"


class OrgRequired(KassaError):
    status = 422
    code = "org_required"
    title = "You belong to several organizations; say which one"


class InvitationNotFound(NotFound):
    code = "invitation_not_found"
    title = "No such invitation"


class InvitationPending(Conflict):
    code = "invitation_pending"
    title = "That e-mail already has a pending invitation"


class InvitationNotPending(Conflict):
    code = "invitation_not_pending"
    title = "The invitation is no longer pending"


class LoginRequired(Unauthorized):
    code = "login_required"
    title = "This e-mail has an account: log in as it to accept"


class InvitationForAnotherAccount(Forbidden):
    code = "invitation_for_another_account"
    title = "This invitation is addressed to another account"
