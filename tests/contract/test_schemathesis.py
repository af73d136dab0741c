"""Contract test: the running app honours its own ``/openapi.json``.

Schemathesis loads the schema from the real ASGI app (``create_app(rt)`` over the migrated
test database; schemathesis runs the app's lifespan itself) and, for every operation the
schema lists, sends generated requests in-process (its examples, coverage and fuzzing
phases, positive and negative inputs) and asserts four checks on every response:

* ``not_a_server_error``           no 5xx, whatever the input;
* ``status_code_conformance``      every status code returned is documented;
* ``content_type_conformance``     every Content-Type returned is documented;
* ``response_schema_conformance``  every body matches its documented schema.

No operation is excluded. There are three tests here, and a fourth in
``test_schemathesis_real_objects.py`` (every operation on the real objects of one
organization, asserting that every operation of the spec was run); the examples per
operation are kept small for a bounded run time (``KASSA_FUZZ_EXAMPLES`` goes deeper):

1. ``test_api_conforms_to_its_openapi_schema``: every operation, every case sent with the
   bearer token of one real org owner (signed up once for this module) so the
   authenticated routes reach their handlers. Fuzzing that shared owner is safe: generated
   ids, refresh tokens and e-mails cannot collide with real ones, so
   ``DELETE /v1/members/{user_id}``, ``POST /v1/auth/logout`` and ``POST /v1/auth/login``
   never touch the owner's membership, session or lockout counter, and whatever
   ``PATCH /v1/org`` changes only concerns this module's own organization.

2. ``test_operations_on_real_ids_and_tokens_conform`` (``test_schemathesis_tokens.py``):
   random values almost never name a real row, so the operations that take an id, a token or
   an e-mail are re-run with real ones substituted into the generated case (the caller's own
   user id, another member's id, an API key id, a live or an already-rotated refresh token,
   a real e-mail with the right or a wrong password). Those requests revoke sessions, demote
   or remove members and count failed logins, so every example gets a fresh organization of
   its own.

3. ``test_nul_characters_are_rejected_not_crashed``: PostgreSQL text cannot hold U+0000, a
   classic way for valid JSON to become a 500. The fuzzer can produce it but too rarely to
   find it in a few examples, so this test puts one into a string (path, query or body) of
   each generated positive case; into a pagination cursor, inside its base64url encoding.

The one accepted deviation: ``GET /ready`` answers its documented 503 "not ready" because
no worker runs in the tests; ``not_a_server_error`` is waived for that response only after
asserting that the missing worker heartbeat is the sole reason (see ``call_and_validate``).
"""

from __future__ import annotations

import base64
from typing import Any

import hypothesis
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.conftest import Tenant
from tests.contract.fuzz import Case, call_and_validate, settings

schema = schemathesis.pytest.from_fixture("api_schema")


# --- 1. every operation ------------------------------------------------------------------


@schema.parametrize()
@settings(max_examples=10)
def test_api_conforms_to_its_openapi_schema(case: Case, owner: Tenant) -> None:
    call_and_validate(case, owner.headers)


# --- 3. U+0000 in strings -------------------------------------------------------------

# Every operation that takes a path parameter, a query parameter or a body; the ones left
# out take no input at all, so there is nowhere to put a U+0000.
WITH_STRING_INPUTS = schema.exclude(
    method="GET",
    path=["/health", "/ready", "/metrics", "/.well-known/jwks.json", "/v1/me", "/v1/org"],
)


def _string_slots(case: Case) -> list[tuple[Any, Any]]:
    """(container, key) of every string value in the case's path, query and body."""
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, str):
                slots.append((node, key))
            elif isinstance(value, dict | list):
                walk(value)

    for part in (case.path_parameters, case.query, case.body):
        if isinstance(part, dict | list):
            walk(part)
    return slots


@WITH_STRING_INPUTS.parametrize()
@WITH_STRING_INPUTS.given(data=st.data())
@settings(max_examples=10)
def test_nul_characters_are_rejected_not_crashed(
    case: Case, data: st.DataObject, owner: Tenant
) -> None:
    # A valid request but for one U+0000: negative cases are invalid anyway (and are
    # fuzzed by the first test), so only positive ones are tainted.
    hypothesis.assume(case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE)
    slots = _string_slots(case)
    if slots:
        container, key = data.draw(st.sampled_from(slots), label="tainted")
        value = data.draw(st.sampled_from(["\x00", "a\x00b", container[key] + "\x00"]))
        if container is case.query and key == "cursor":
            # Cursors are opaque base64url; the U+0000 has to be inside the encoding to
            # get past the decoder.
            value = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
        container[key] = value
    call_and_validate(case, owner.headers)
