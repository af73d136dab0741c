"""Contract test: the identity operations with real ids and tokens substituted into the
generated cases (see ``test_schemathesis.py`` for the checks). Its own module so that the
contract tests spread over the pytest workers."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st

from tests.conftest import PASSWORD, Tenant, add_member, api_key, signup
from tests.contract.fuzz import Case, call_and_validate, settings

schema = schemathesis.pytest.from_fixture("api_schema")


# --- 2. real ids and tokens substituted into generated cases -----------------------------

WITH_REAL_VALUES = schema.include(
    path_regex=r"^/v1/(members/\{user_id\}|api_keys/\{key_id\}|auth/(login|refresh|logout))$"
)


def _substitute(case: Case, target: str, client: TestClient, tenant: Tenant) -> None:
    """Put a real value of ``tenant``'s into ``case``: ``self`` is the caller's own user id
    / a live refresh token / the right password; ``other`` is another member's id / a
    refresh token already rotated (a replay) / a wrong password."""
    if target == "generated":
        return
    path = case.operation.path
    if path.endswith("{user_id}"):
        if target == "self":
            value = tenant.user_id
        else:
            value = add_member(client, tenant, "admin").user_id
        case.path_parameters["user_id"] = value
    elif path.endswith("{key_id}"):
        case.path_parameters["key_id"] = api_key(client, tenant)["id"]
    elif not isinstance(case.body, dict):
        return  # a negative case whose body is not an object; nothing to put a value in
    elif path in ("/v1/auth/refresh", "/v1/auth/logout"):
        token = tenant.refresh_token
        if target == "other":
            rotated = client.post("/v1/auth/refresh", json={"refresh_token": token})
            assert rotated.status_code == 200, rotated.text
        case.body["refresh_token"] = token
    else:  # /v1/auth/login
        case.body["email"] = tenant.email
        if target == "self":
            case.body["password"] = PASSWORD


@WITH_REAL_VALUES.parametrize()
@WITH_REAL_VALUES.given(target=st.sampled_from(["generated", "self", "other"]))
@settings(max_examples=15)
def test_operations_on_real_ids_and_tokens_conform(
    case: Case, target: str, client: TestClient
) -> None:
    tenant = signup(client, name="Contract Fresh Org")
    _substitute(case, target, client, tenant)
    call_and_validate(case, tenant.headers)
