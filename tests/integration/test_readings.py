"""Meter points and readings through the API: readings become derived usage events, kept in
step with the readings (superseded ones voided), idempotent, per-row CSV, org-scoped."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kassa.readings.rules import Reading, ReadingError, Register, plan_events
from tests.conftest import Tenant, add_member, create, make_customer

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def make_meter_point(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    """A kWh `sum` meter, a customer and a meter point billing that customer on it."""
    existing = client.get("/v1/meters/kwh", headers=tenant.headers)
    if existing.status_code == 404:
        create(client, tenant, "/v1/meters",
               {"event_name": "kwh", "name": "Energy", "aggregation": "sum",
                "value_property": "kwh", "unit": "kWh"})  # fmt: skip
    if "customer" not in body:
        body["customer"] = make_customer(client, tenant)["id"]
    body.setdefault("code", "flat-1")
    body.setdefault("meter", "kwh")
    return create(client, tenant, "/v1/meter_points", body)


def make_meter_reading(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    point = make_meter_point(client, tenant)
    return create(client, tenant, "/v1/meter_readings",
                  {"meter_point": point["code"], "reading": "100",
                   "read_at": T0.isoformat()})  # fmt: skip


def post(client: TestClient, tenant: Tenant, point: str, at: datetime, reading: Any,
         **extra: Any) -> Any:  # fmt: skip
    body = {"meter_point": point, "reading": reading, "read_at": at.isoformat(), **extra}
    return client.post("/v1/meter_readings", json=body, headers=tenant.headers)


def record(client: TestClient, tenant: Tenant, point: str, at: datetime, reading: Any,
           **extra: Any) -> dict[str, Any]:  # fmt: skip
    response = post(client, tenant, point, at, reading, **extra)
    assert response.status_code == 201, response.text
    return dict(response.json())


def usage(client: TestClient, tenant: Tenant, customer: str, start: datetime,
          end: datetime) -> str:  # fmt: skip
    response = client.get(
        f"/v1/customers/{customer}/usage",
        params={"meter": "kwh", "from": start.isoformat(), "to": end.isoformat()},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["value"])


def derived(client: TestClient, tenant: Tenant, customer: str) -> list[dict[str, Any]]:
    """Every usage event of the customer (voided ones too), oldest first."""
    response = client.get(
        "/v1/events", params={"customer": customer, "limit": 100}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["has_more"] is False
    return sorted(response.json()["data"], key=lambda e: (e["timestamp"], e["id"]))


def active(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["voided_at"] is None]


def readings_of(client: TestClient, tenant: Tenant, point: str) -> list[dict[str, Any]]:
    response = client.get(
        "/v1/meter_readings", params={"meter_point": point, "limit": 100}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_a_series_becomes_consumption_events_and_usage_is_last_minus_first(
    client: TestClient, tenant: Tenant
) -> None:
    point = make_meter_point(client, tenant, register_decimals=1, unit="kWh")
    cust = point["customer"]
    assert point["object"] == "meter_point" and point["event_name"] == "kwh"
    assert (point["register_digits"], point["register_decimals"]) == (None, 1)
    assert point["spread_interval"] is None
    by_code = client.get("/v1/meter_points/flat-1", headers=tenant.headers).json()
    assert by_code == point == client.get(f"/v1/meter_points/{point['id']}",
                                          headers=tenant.headers).json()  # fmt: skip

    first = record(client, tenant, "flat-1", T0, "100")
    assert first["events"] == {"accepted": 0, "duplicates": 0, "voided": 0}
    assert (first["object"], first["meter_point"], first["customer"]) == (
        "meter_reading", point["id"], cust,
    )  # fmt: skip
    assert (first["reading"], first["quality"], first["source"]) == ("100", "actual", "api")
    assert first["created_by"] == tenant.user_id
    second = record(client, tenant, point["id"], T0 + DAY, "150.5")
    assert second["events"] == {"accepted": 1, "duplicates": 0, "voided": 0}
    third = record(client, tenant, "flat-1", T0 + 2 * DAY, 180)
    assert third["events"] == {"accepted": 1, "duplicates": 0, "voided": 0}

    events = derived(client, tenant, cust)
    assert [(e["value"], e["timestamp"]) for e in events] == [
        ("50.5", "2026-03-01T23:59:59.999999Z"),
        ("29.5", "2026-03-02T23:59:59.999999Z"),
    ]
    assert all(e["event_id"].startswith("rd_") and len(e["event_id"]) == 35 for e in events)
    assert events[0]["properties"] == {
        "kwh": "50.5", "meter_point": "flat-1", "derived": True, "estimated": False,
    }  # fmt: skip
    assert usage(client, tenant, cust, T0, T0 + 3 * DAY) == "80.0"
    assert usage(client, tenant, cust, T0 + DAY, T0 + 3 * DAY) == "29.5"
    listed = readings_of(client, tenant, "flat-1")
    assert [r["id"] for r in listed] == [third["id"], second["id"], first["id"]]
    one = client.get(f"/v1/meter_readings/{second['id']}", headers=tenant.headers).json()
    assert one == {k: v for k, v in second.items() if k != "events"}


def test_six_digit_register_rollover(client: TestClient, tenant: Tenant) -> None:
    point = make_meter_point(client, tenant, register_digits=6)
    record(client, tenant, "flat-1", T0, 999990)
    wrapped = record(client, tenant, "flat-1", T0 + DAY, "15", rollover=True)
    assert (wrapped["rollover"], wrapped["events"]["accepted"]) == (True, 1)
    assert usage(client, tenant, point["customer"], T0, T0 + 2 * DAY) == "25"
    too_big = post(client, tenant, "flat-1", T0 + 2 * DAY, "1000000")
    assert too_big.status_code == 422
    assert too_big.json()["code"] == "reading_out_of_range"
    assert too_big.json()["errors"][0]["field"] == "reading"


def test_meter_replacement_counts_from_the_new_meters_start_value(
    client: TestClient, tenant: Tenant
) -> None:
    point = make_meter_point(client, tenant)
    record(client, tenant, "flat-1", T0, 54321)
    record(client, tenant, "flat-1", T0 + DAY, 54400)  # the old meter's final reading
    new = record(client, tenant, "flat-1", T0 + 2 * DAY, 30, replacement=True, start_value="5")
    assert (new["replacement"], new["start_value"]) == (True, "5")
    events = derived(client, tenant, point["customer"])
    assert [e["value"] for e in events] == ["79", "25"]
    assert usage(client, tenant, point["customer"], T0, T0 + 3 * DAY) == "104"


def test_a_lower_reading_without_a_flag_is_refused_and_nothing_is_stored(
    client: TestClient, tenant: Tenant
) -> None:
    point = make_meter_point(client, tenant, register_digits=6)
    record(client, tenant, "flat-1", T0, 999990)
    lower = post(client, tenant, "flat-1", T0 + DAY, 15)
    assert lower.status_code == 422
    assert lower.headers["content-type"] == "application/problem+json"
    body = lower.json()
    assert body["code"] == "reading_decreased"
    assert [e["field"] for e in body["errors"]] == ["reading"]
    assert len(readings_of(client, tenant, "flat-1")) == 1
    assert derived(client, tenant, point["customer"]) == []


def test_an_actual_reading_trues_up_the_estimate(client: TestClient, tenant: Tenant) -> None:
    point = make_meter_point(client, tenant)
    cust = point["customer"]
    record(client, tenant, "flat-1", T0, 100)
    estimate = record(client, tenant, "flat-1", T0 + DAY, 160, quality="estimated")
    assert estimate["events"] == {"accepted": 1, "duplicates": 0, "voided": 0}
    [guess] = derived(client, tenant, cust)
    assert (guess["value"], guess["properties"]["estimated"]) == ("60", True)
    assert usage(client, tenant, cust, T0, T0 + 3 * DAY) == "60"

    actual = record(client, tenant, "flat-1", T0 + 2 * DAY, 190)
    assert actual["events"] == {"accepted": 1, "duplicates": 0, "voided": 1}
    events = derived(client, tenant, cust)
    voided = [e for e in events if e["voided_at"] is not None]
    assert [e["event_id"] for e in voided] == [guess["event_id"]]
    assert voided[0]["void_reason"] == f"superseded by reading {actual['id']}"
    assert [(e["value"], e["properties"]["estimated"]) for e in active(events)] == [("90", False)]
    assert usage(client, tenant, cust, T0, T0 + 3 * DAY) == "90"

    # an actual at the estimate's own instant replaces it there too
    same_instant = record(client, tenant, "flat-1", T0 + DAY, 150)
    assert same_instant["events"] == {"accepted": 2, "duplicates": 0, "voided": 1}
    assert [e["value"] for e in active(derived(client, tenant, cust))] == ["50", "40"]
    assert usage(client, tenant, cust, T0, T0 + 3 * DAY) == "90"


def test_reposting_the_same_reading_is_idempotent(client: TestClient, tenant: Tenant) -> None:
    point = make_meter_point(client, tenant, register_decimals=2)
    record(client, tenant, "flat-1", T0, 100)
    first = record(client, tenant, "flat-1", T0 + DAY, "150.5")
    again = post(client, tenant, "flat-1", T0 + DAY, "150.50")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]
    assert again.json()["events"] == {"accepted": 0, "duplicates": 1, "voided": 0}
    assert len(readings_of(client, tenant, "flat-1")) == 2
    assert len(derived(client, tenant, point["customer"])) == 1
    # the same instant and quality with another value is a conflict, not a second reading
    other = post(client, tenant, "flat-1", T0 + DAY, "151")
    assert other.status_code == 409
    assert (other.json()["code"], other.json()["errors"][0]["field"]) == (
        "reading_conflict", "read_at",
    )  # fmt: skip
    someone_else = make_customer(client, tenant)["id"]
    moved = post(client, tenant, "flat-1", T0 + DAY, "150.5", customer=someone_else)
    assert moved.status_code == 409
    assert (moved.json()["code"], moved.json()["errors"][0]["field"]) == (
        "reading_conflict", "customer",
    )  # fmt: skip
    assert usage(client, tenant, point["customer"], T0, T0 + 2 * DAY) == "50.50"


def test_spread_over_hourly_buckets_sums_exactly(client: TestClient, tenant: Tenant) -> None:
    point = make_meter_point(client, tenant, spread_interval="hour")
    assert point["spread_interval"] == "hour"
    cust = point["customer"]
    record(client, tenant, "flat-1", T0 + timedelta(minutes=30), 1000)
    done = record(client, tenant, "flat-1", T0 + timedelta(hours=3, minutes=15), 1010)
    assert done["events"]["accepted"] == 4
    events = derived(client, tenant, cust)
    # 30, 60, 60 and 15 minutes of 165: exact shares 1.82, 3.64, 3.64, 0.91 → 2, 4, 3, 1
    assert [(e["timestamp"], e["value"]) for e in events] == [
        ("2026-03-01T00:59:59.999999Z", "2"),
        ("2026-03-01T01:59:59.999999Z", "4"),
        ("2026-03-01T02:59:59.999999Z", "3"),
        ("2026-03-01T03:14:59.999999Z", "1"),
    ]
    assert usage(client, tenant, cust, T0, T0 + DAY) == "10"
    assert usage(client, tenant, cust, T0 + HOUR, T0 + 2 * HOUR) == "4"


def test_readings_bill_the_customer_of_the_later_reading(
    client: TestClient, tenant: Tenant
) -> None:
    point = make_meter_point(client, tenant)
    leaving = point["customer"]
    arriving = make_customer(client, tenant, external_id="renter-2")["id"]
    record(client, tenant, "flat-1", T0, 100)
    record(client, tenant, "flat-1", T0 + DAY, 140)  # move-out reading
    moved_in = record(client, tenant, "flat-1", T0 + 3 * DAY, 200, customer="renter-2")
    assert moved_in["customer"] == arriving
    assert usage(client, tenant, leaving, T0, T0 + 5 * DAY) == "40"
    assert usage(client, tenant, arriving, T0, T0 + 5 * DAY) == "60"


def test_manual_entry_records_who_typed_it(client: TestClient, tenant: Tenant) -> None:
    make_meter_point(client, tenant)
    staff = add_member(client, tenant, "staff")
    body = {"meter_point": "flat-1", "reading": "7", "read_at": T0.isoformat(),
            "quality": "manual"}  # fmt: skip
    response = client.post("/v1/meter_readings", json=body, headers=staff.headers)
    assert response.status_code == 201, response.text
    assert (response.json()["source"], response.json()["created_by"]) == ("manual", staff.user_id)
    viewer = add_member(client, tenant, "viewer")
    body["read_at"] = (T0 + DAY).isoformat()
    assert client.post("/v1/meter_readings", json=body, headers=viewer.headers).status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"reading": 150.5}, 422, "validation_error", "reading"),
        ({"reading": "1e3"}, 422, "validation_error", "reading"),
        ({"reading": "-1"}, 422, "reading_invalid", "reading"),
        ({"reading": "1.25"}, 422, "reading_out_of_range", "reading"),
        ({"read_at": "2026-03-02T00:00:00"}, 422, "validation_error", "read_at"),
        ({"read_at": "2099-01-01T00:00:00Z"}, 422, "reading_in_future", "read_at"),
        ({"read_at": "1969-12-31T23:59:59Z"}, 422, "validation_error", "read_at"),
        ({"read_at": "0001-01-01T00:00:00+01:00"}, 422, "validation_error", "read_at"),
        ({"rollover": True}, 422, "rollover_unsupported", "rollover"),
        ({"start_value": "3"}, 422, "reading_invalid", "start_value"),
        ({"quality": "guess"}, 422, "validation_error", "quality"),
        ({"meter_point": "nope"}, 404, "meter_point_not_found", None),
        ({"customer": "nobody"}, 404, "customer_not_found", None),
    ],
)
def test_invalid_readings_are_refused(
    client: TestClient, tenant: Tenant, body: dict[str, Any], status: int, code: str,
    field: str | None,
) -> None:  # fmt: skip
    make_meter_point(client, tenant, register_decimals=1)
    record(client, tenant, "flat-1", T0, "100")
    payload = {"meter_point": "flat-1", "reading": "120", "read_at": (T0 + DAY).isoformat()}
    response = client.post("/v1/meter_readings", json={**payload, **body}, headers=tenant.headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    if field is not None:
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert len(readings_of(client, tenant, "flat-1")) == 1


def test_meter_point_validation(client: TestClient, tenant: Tenant) -> None:
    make_meter_point(client, tenant)
    create(
        client, tenant, "/v1/meters", {"event_name": "calls", "name": "C", "aggregation": "count"}
    )

    def attempt(**body: Any) -> Any:
        return client.post("/v1/meter_points", json={"code": "m2", "meter": "kwh", **body},
                           headers=tenant.headers)  # fmt: skip

    for bad in ({"meter": "calls"}, {"meter": "nope"}):
        refused = attempt(**bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "meter"
    assert attempt(register_decimals=7).status_code == 422
    assert attempt(spread_interval="week").status_code == 422
    taken = attempt(code="flat-1")
    assert (taken.status_code, taken.json()["code"]) == (409, "duplicate_code")
    orphan = create(client, tenant, "/v1/meter_points", {"code": "m2", "meter": "kwh"})
    assert orphan["customer"] is None
    needs = post(client, tenant, "m2", T0, 1)
    assert needs.status_code == 422 and needs.json()["errors"][0]["field"] == "customer"
    listed = client.get("/v1/meter_points", headers=tenant.headers).json()["data"]
    assert [p["code"] for p in listed] == ["m2", "flat-1"]


def test_csv_import_applies_rows_in_order_and_reports_bad_ones(
    client: TestClient, tenant: Tenant
) -> None:
    point = make_meter_point(client, tenant, register_digits=6)
    make_customer(client, tenant, external_id="renter-2")
    rows = [
        "meter_point,read_at,reading,quality,customer,rollover,replacement",
        f"flat-1,{T0.isoformat()},999000,actual,,,",
        f"flat-1,{(T0 + DAY).isoformat()},999990,estimated,,,",
        f"flat-1,{(T0 + 2 * DAY).isoformat()},10,actual,,false,",  # lower, no flag
        f"flat-1,{(T0 + 2 * DAY).isoformat()},10,actual,,true,",
        f"nope,{T0.isoformat()},1,actual,,,",
        "flat-1,yesterday,1,actual,,,",
        "flat-1,2026-03-04T00:00:00Z",
        f"flat-1,{(T0 + 3 * DAY).isoformat()},500,actual,renter-2,,",
    ]
    response = client.post(
        "/v1/meter_readings/import",
        content="\r\n".join(rows) + "\r\n",
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (4, 0)
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (3, "reading_decreased"),
        (5, "meter_point_not_found"),
        (6, "invalid_row"),
        (7, "invalid_row"),
    ]
    assert body["rejected"][0]["message"].startswith("reading: 10 is lower than")
    # the estimate's event was voided when the actual rollover trued it up
    assert body["events"] == {"accepted": 3, "duplicates": 0, "voided": 1}
    assert [r["source"] for r in readings_of(client, tenant, "flat-1")] == ["csv"] * 4
    assert usage(client, tenant, point["customer"], T0, T0 + 5 * DAY) == "1010"
    assert usage(client, tenant, "renter-2", T0, T0 + 5 * DAY) == "490"

    again = client.post(
        "/v1/meter_readings/import",
        content="\n".join(rows),
        headers={**tenant.headers, "Content-Type": "text/csv"},
    ).json()
    assert (again["accepted"], again["duplicates"], len(again["rejected"])) == (0, 4, 4)
    assert again["events"]["accepted"] == again["events"]["voided"] == 0
    bad_header = client.post("/v1/meter_readings/import", content="a,b\n1,2\n",
                             headers=tenant.headers)  # fmt: skip
    assert bad_header.status_code == 422 and bad_header.json()["errors"][0]["field"] == "body"


def test_another_orgs_meter_point_is_not_found(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = make_meter_point(client, other_tenant)
    record(client, other_tenant, "flat-1", T0, 100)
    mine = make_customer(client, tenant)
    for ref in ("flat-1", theirs["id"]):
        response = post(client, tenant, ref, T0 + DAY, 200, customer=mine["id"])
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "meter_point_not_found"
        assert client.get(f"/v1/meter_points/{ref}", headers=tenant.headers).status_code == 404
        listed = client.get("/v1/meter_readings", params={"meter_point": ref},
                            headers=tenant.headers)  # fmt: skip
        assert listed.status_code == 404
    assert client.get("/v1/meter_points", headers=tenant.headers).json()["data"] == []
    assert client.get("/v1/meter_readings", headers=tenant.headers).json()["data"] == []
    assert len(readings_of(client, other_tenant, "flat-1")) == 1
    assert derived(client, other_tenant, theirs["customer"]) == []


def _expected_ids(point_id: str, accepted: list[Reading], register: Register,
                  interval: timedelta | None) -> set[str]:  # fmt: skip
    return {e.event_id for e in plan_events(point_id, accepted, register, interval)}


def test_recorded_events_always_equal_the_full_plan(client: TestClient, tenant: Tenant) -> None:
    """Readings arrive out of order, estimates among them; after each one the derived events
    on record are exactly what planning the whole series gives (the service plans a window)."""
    point = make_meter_point(client, tenant, register_digits=4, spread_interval="hour")
    register, interval = Register(4), HOUR
    rng = random.Random(6)
    instants = [T0 + timedelta(minutes=40 * i) for i in range(18)]
    truth = {at: (9700 + 37 * i) % 10_000 for i, at in enumerate(instants)}  # wraps once
    order = list(instants)
    for _ in range(8):  # mostly in time order, some back-dated
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    accepted: list[Reading] = []
    voided = 0
    for at in order:
        quality = rng.choice(["actual", "actual", "estimated", "manual"])
        value = truth[at] + (rng.randint(0, 9) if quality == "estimated" else 0)
        value = min(value, 9999)
        ok, rollover = False, False
        for flag in (False, True):  # as a meter reader would: flag a wrap only if needed
            candidate = Reading(at, Decimal(value), quality, rollover=flag)
            try:
                _expected_ids(point["id"], [*accepted, candidate], register, interval)
            except ReadingError:
                continue
            ok, rollover = True, flag
            break
        response = post(client, tenant, "flat-1", at, value, quality=quality, rollover=rollover)
        assert response.status_code == (201 if ok else 422), (at, value, response.text)
        if ok:
            voided += response.json()["events"]["voided"]
            accepted.append(Reading(at, Decimal(value), quality, rollover=rollover))
        on_record = {e["event_id"] for e in active(derived(client, tenant, point["customer"]))}
        assert on_record == _expected_ids(point["id"], accepted, register, interval)
    estimates = sum(r.quality == "estimated" for r in accepted)
    assert (len(accepted), estimates, voided) == (18, 8, 15)


def test_a_dropped_estimates_rollover_passes_to_the_actual_reading(
    client: TestClient, tenant: Tenant
) -> None:
    """The actual inherits the wrap its client saw on the estimate; its later pairs depend on
    that flag, so they must be planned with it (the service's window starts early enough)."""
    point = make_meter_point(client, tenant, register_digits=4)
    record(client, tenant, "flat-1", T0, 9990)
    record(client, tenant, "flat-1", T0 + DAY, 5, quality="estimated", rollover=True)
    record(client, tenant, "flat-1", T0 + 2 * DAY, 20)  # above the estimate: no flag sent
    record(client, tenant, "flat-1", T0 + 3 * DAY, 40)
    record(client, tenant, "flat-1", T0 + 4 * DAY, 45)
    stored = [
        Reading(T0, Decimal(9990), "actual"),
        Reading(T0 + DAY, Decimal(5), "estimated", rollover=True),
        Reading(T0 + 2 * DAY, Decimal(20), "actual"),
        Reading(T0 + 3 * DAY, Decimal(40), "actual"),
        Reading(T0 + 4 * DAY, Decimal(45), "actual"),
    ]
    events = active(derived(client, tenant, point["customer"]))
    assert [e["value"] for e in events] == ["30", "20", "5"]
    assert {e["event_id"] for e in events} == _expected_ids(point["id"], stored, Register(4), None)
    assert usage(client, tenant, point["customer"], T0, T0 + 5 * DAY) == "55"


def test_concurrent_readings_of_one_meter_serialize(client: TestClient, tenant: Tenant) -> None:
    point = make_meter_point(client, tenant)
    instants = [T0 + timedelta(hours=i) for i in range(8)]
    barrier = threading.Barrier(len(instants))
    statuses: list[int] = []

    def send(i: int) -> None:
        barrier.wait()
        statuses.append(post(client, tenant, "flat-1", instants[i], 100 + 10 * i).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(instants))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * len(instants)
    readings = [Reading(at, Decimal(100 + 10 * i), "actual") for i, at in enumerate(instants)]
    expected = _expected_ids(point["id"], readings, Register(), None)
    events = derived(client, tenant, point["customer"])
    assert {e["event_id"] for e in active(events)} == expected
    assert usage(client, tenant, point["customer"], T0, T0 + DAY) == "70"
