"""Contract test: every operation of the spec, on the real objects of one organization.

Random ids almost never name a row, so most requests of the other contract tests stop at a
404. Here a module fixture builds an organization with one or two of everything and each
generated case gets real ids (see ``_put_real_ids``), so requests reach the statement of a
real customer, the migration of a real plan, the credit note of a finalized invoice. The
``exercised`` fixture asserts, when the module is done, that every operation of the spec was
run: a new route cannot escape the fuzzer. ``KASSA_FUZZ_EXAMPLES`` / ``KASSA_FUZZ_REPORT``:
see ``docs/api-robustness.md``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st

from tests.conftest import (
    Tenant,
    add_member,
    api_key,
    create,
    make_customer,
    make_plan,
    signup,
    unique_email,
)
from tests.contract.fuzz import Case, call_and_validate, settings

schema = schemathesis.pytest.from_fixture("api_schema")


@dataclass
class World:
    """An organization with one or two of everything, and which names take their ids."""

    tenant: Tenant
    values: dict[str, list[str]] = field(default_factory=dict)


def _made(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def world(client: TestClient) -> World:
    """Real objects for path parameters (and the references in queries and bodies), so
    generated requests reach past the 404 of an id nobody has: the statement of a real
    customer, the migration of a real plan, the credit note of a finalized invoice."""
    t = signup(client, name="Contract World Org")
    h = t.headers
    clock = create(client, t, "/v1/test_clocks", {"frozen_time": "2026-01-01T00:00:00Z"})
    customer = make_customer(client, t, external_id="world-1", email=unique_email("renter"))
    clocked = make_customer(client, t, test_clock=clock["id"], timezone="Pacific/Kiritimati")
    meter = create(
        client,
        t,
        "/v1/meters",
        {"event_name": "kwh", "name": "Energy", "aggregation": "sum", "value_property": "kwh"},
    )
    plan = make_plan(
        client,
        t,
        code="world-plan",
        charges=[{"meter": "kwh", "model": "per_unit", "properties": {"unit_amount": "0.5"}}],
    )
    make_plan(client, t, code="world-plan-2")
    client.patch("/v1/plans/world-plan", json={"amount": 70000}, headers=h)  # a version 2
    coupon = create(
        client, t, "/v1/coupons", {"code": "WORLD10", "percent_off": "10", "duration": "forever"}
    )
    sub = create(
        client,
        t,
        "/v1/subscriptions",
        {"customer": customer["id"], "plan": "world-plan", "coupon": "WORLD10"},
    )
    clocked_sub = create(
        client, t, "/v1/subscriptions", {"customer": clocked["id"], "plan": "world-plan-2"}
    )
    _made(
        client.post(
            "/v1/events",
            json={
                "event_id": "world-event-1",
                "customer": customer["id"],
                "event_name": "kwh",
                "timestamp": sub["current_period_start"],
                "properties": {"kwh": 3},
            },
            headers=h,
        )
    )
    event = client.get("/v1/events", headers=h).json()["data"][0]
    draft = create(
        client,
        t,
        "/v1/invoices",
        {
            "customer": customer["id"],
            "lines": [{"description": "Cleaning", "quantity": "2", "unit_amount": 2500}],
        },
    )
    issued = create(
        client,
        t,
        "/v1/invoices",
        {
            "customer": customer["id"],
            "auto_finalize": True,
            "lines": [{"description": "Keys", "unit_amount": 1000}],
        },
    )
    note = create(client, t, "/v1/credit_notes", {"invoice": issued["id"], "amount": 100})
    point = create(
        client,
        t,
        "/v1/meter_points",
        {"code": "flat-1", "meter": "kwh", "customer": customer["id"]},
    )
    reading = create(
        client,
        t,
        "/v1/meter_readings",
        {"meter_point": "flat-1", "reading": "100", "read_at": sub["current_period_start"]},
    )
    key = api_key(client, t)
    member = add_member(client, t, "admin")
    customers = [customer["id"], "world-1", clocked["id"]]
    invoices = [draft["id"], issued["id"]]
    subs = [sub["id"], clocked_sub["id"]]
    values = {
        "customer": customers, "customer_id": customers[::2],
        "meter": [meter["id"], "kwh"], "plan": [plan["id"], "world-plan", "world-plan-2"],
        "coupon": [coupon["id"], "WORLD10"], "sub_id": subs, "subscription": subs,
        "clock_id": [clock["id"]], "test_clock": [clock["id"]], "event_id": [event["id"]],
        "meter_point": [point["id"], "flat-1"], "reading_id": [reading["id"]],
        "invoice_id": invoices, "invoice": invoices, "note_id": [note["id"]],
        "user_id": [member.user_id], "key_id": [key["id"]],
    }  # fmt: skip
    return World(t, values)


def _put_real_ids(case: Case, data: st.DataObject, world: World) -> None:
    """Every path parameter that names an object gets a real one (nearly always); a query
    parameter or a top-level body field of the same name gets one half of the time."""
    slots: list[tuple[dict[str, Any], str, float]] = []
    slots += [(case.path_parameters or {}, name, 0.9) for name in (case.path_parameters or {})]
    slots += [(case.query, name, 0.5) for name in (case.query or {})]
    if isinstance(case.body, dict):
        slots += [(case.body, name, 0.5) for name in case.body]
    for container, name, chance in slots:
        real = world.values.get(name)
        if real and data.draw(st.floats(0, 1), label=f"real {name}?") < chance:
            container[name] = data.draw(st.sampled_from(real), label=name)


@schema.parametrize()
@schema.given(data=st.data())
@settings(max_examples=15)
def test_every_operation_on_real_objects_conforms(
    case: Case, data: st.DataObject, world: World, exercised: Counter[str]
) -> None:
    _put_real_ids(case, data, world)
    exercised[f"{case.method.upper()} {case.operation.path}"] += 1
    call_and_validate(case, world.tenant.headers)


@pytest.fixture(scope="module")
def exercised(api_schema: schemathesis.BaseSchema) -> Iterator[Counter[str]]:
    """Operations the real-object test ran, with how many examples each. When the module
    is done it must be every operation of the spec: a new route cannot escape the fuzzer
    (nothing is excluded, and an operation schemathesis could not generate for fails)."""
    counts: Counter[str] = Counter()
    yield counts
    spec = {
        f"{method.upper()} {path}"
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete", "head", "options")
    }
    if counts:  # the test ran (not deselected)
        assert set(counts) == spec, {"not fuzzed": spec - set(counts)}
        report = os.environ.get("KASSA_FUZZ_REPORT")  # a file for the counts of a deep run
        if report:
            with open(report, "a") as out:
                out.write(json.dumps({"operations": len(counts), "examples": counts}) + "\n")
