from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from kassa.customers.models import Customer
from kassa.runtime import Runtime
from tests.conftest import Tenant, make_customer, make_subscription


def test_create_and_address_by_id_or_external_id(client: TestClient, tenant: Tenant) -> None:
    created = make_customer(
        client,
        tenant,
        name="Ann Renter",
        email="ann@example.com",
        external_id="flat-12",
        timezone="Europe/Berlin",
        currency="eur",
        address={"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "de"},
        tax={"kind": "individual"},
        metadata={"unit": "12"},
    )
    assert created["id"].startswith("cus_") and created["address"]["country"] == "DE"
    by_external = client.get("/v1/customers/flat-12", headers=tenant.headers).json()
    assert by_external == created
    dup = client.post(
        "/v1/customers", json={"name": "B", "external_id": "flat-12"}, headers=tenant.headers
    )
    assert dup.status_code == 409 and dup.json()["code"] == "external_id_taken"


def test_validation_names_each_field(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/v1/customers",
        json={
            "email": "nope",
            "currency": "eu",
            "timezone": "Nowhere/City",
            "address": {"country": "ZZ"},
            "tax": {"kind": "robot"},
            "colour": "red",
        },
        headers=tenant.headers,
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"email", "currency", "timezone", "address.country", "tax.kind", "colour"}


def test_update_and_list(client: TestClient, tenant: Tenant) -> None:
    first = make_customer(client, tenant, email="x@example.com")
    second = make_customer(client, tenant)
    patched = client.patch(
        f"/v1/customers/{first['id']}", json={"name": "New name"}, headers=tenant.headers
    )
    assert patched.status_code == 200 and patched.json()["name"] == "New name"
    assert patched.json()["email"] == "x@example.com"
    listed = client.get("/v1/customers", headers=tenant.headers).json()["data"]
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    filtered = client.get("/v1/customers?email=x@example.com", headers=tenant.headers).json()
    assert [c["id"] for c in filtered["data"]] == [first["id"]]


def test_soft_delete_and_restore_within_30_days(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    customer = make_customer(client, tenant, external_id="gone")
    deleted = client.delete(f"/v1/customers/{customer['id']}", headers=tenant.headers)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert client.get("/v1/customers", headers=tenant.headers).json()["data"] == []
    trash = client.get("/v1/customers?deleted=true", headers=tenant.headers).json()["data"]
    assert [c["id"] for c in trash] == [customer["id"]]
    restored = client.post(f"/v1/customers/{customer['id']}/restore", headers=tenant.headers)
    assert restored.status_code == 200 and restored.json()["deleted"] is False

    client.delete(f"/v1/customers/{customer['id']}", headers=tenant.headers)
    with rt.db.transaction(tenant.org_id) as session:
        session.execute(
            update(Customer)
            .where(Customer.org_id == tenant.org_id, Customer.id == customer["id"])
            .values(deleted_at=rt.clock.now() - timedelta(days=31))
        )
    late = client.post(f"/v1/customers/{customer['id']}/restore", headers=tenant.headers)
    assert late.status_code == 409 and late.json()["code"] == "restore_window_passed"


def test_cannot_delete_a_subscribed_customer(client: TestClient, tenant: Tenant) -> None:
    sub = make_subscription(client, tenant)
    response = client.delete(f"/v1/customers/{sub['customer']}", headers=tenant.headers)
    assert response.status_code == 409 and response.json()["code"] == "customer_has_subscriptions"
    client.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False},
                headers=tenant.headers)  # fmt: skip
    assert (
        client.delete(f"/v1/customers/{sub['customer']}", headers=tenant.headers).status_code == 200
    )


def test_export_holds_everything_and_anonymize_is_irreversible(
    client: TestClient, tenant: Tenant
) -> None:
    customer = make_customer(
        client,
        tenant,
        name="Jane Doe",
        email="jane@example.com",
        phone="+49 170 1234567",
        external_id="jane",
        address={"line1": "Street 1", "country": "DE"},
        tax={"tax_id": "DE123456789", "kind": "business"},
    )
    sub = make_subscription(client, tenant, customer=customer["id"])
    export = client.get(f"/v1/customers/{customer['id']}/export", headers=tenant.headers).json()
    assert export["customer"]["email"] == "jane@example.com"
    assert [s["id"] for s in export["subscriptions"]] == [sub["id"]]
    assert [e["type"] for e in export["events"]] == ["customer.created"]

    anon = client.post(f"/v1/customers/{customer['id']}/anonymize", headers=tenant.headers)
    assert anon.status_code == 200
    body = anon.json()
    assert body["anonymized"] is True and body["name"] == "anonymized"
    assert body["email"] is None and body["phone"] is None and body["external_id"] is None
    assert body["address"] == {"country": "DE"} and body["tax"]["tax_id"] is None
    after = client.get(f"/v1/customers/{customer['id']}/export", headers=tenant.headers).text
    assert "jane" not in after.lower() and "1234567" not in after and "Street" not in after
    assert sub["id"] in after  # financial records stay
    again = client.patch(f"/v1/customers/{customer['id']}", json={"name": "Jane"},
                         headers=tenant.headers)  # fmt: skip
    assert again.status_code == 409 and again.json()["code"] == "customer_anonymized"


def test_viewers_read_but_do_not_write(client: TestClient, tenant: Tenant) -> None:
    from tests.conftest import add_member

    viewer = add_member(client, tenant, "viewer")
    customer = make_customer(client, tenant)
    assert client.get(f"/v1/customers/{customer['id']}", headers=viewer.headers).status_code == 200
    denied = client.post("/v1/customers", json={"name": "x"}, headers=viewer.headers)
    assert denied.status_code == 403
    assert len(client.get("/v1/customers", headers=tenant.headers).json()["data"]) == 1


def test_tax_ids_must_fit_the_country_and_are_kept_normalized(
    client: TestClient, tenant: Tenant
) -> None:
    bad = client.post(
        "/v1/customers",
        json={"name": "X", "address": {"country": "FR"}, "tax": {"tax_id": "FR123"}},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_tax_id"
    assert bad.json()["errors"][0]["field"] == "tax.tax_id"
    good = make_customer(
        client,
        tenant,
        address={"country": "FR"},
        tax={"kind": "business", "tax_id": "fr 40 303 265 045"},
    )
    assert good["tax"]["tax_id"] == "FR40303265045"
    moved = client.patch(
        f"/v1/customers/{good['id']}", json={"address": {"country": "DE"}}, headers=tenant.headers
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "tax.tax_id"
