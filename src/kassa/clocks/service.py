"""Test clocks. Advancing runs every subscription transition that falls due in between,
in time order, before the call returns (status is ``advancing`` only while it runs)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.clocks.models import TestClock
from kassa.clocks.schemas import TestClockOut
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.errors import Conflict, NotFound, field_error
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.orgs import service as orgs


class TestClockNotFound(NotFound):
    code = "test_clock_not_found"
    title = "No such test clock"


class LiveModeForbidsTestClocks(Conflict):
    code = "test_clocks_need_test_mode"
    title = "Test clocks exist in test-mode organizations only"


def to_schema(c: TestClock) -> TestClockOut:
    return TestClockOut(
        id=c.id, name=c.name, frozen_time=c.frozen_time, status=c.status,
        created_at=c.created_at,
    )  # fmt: skip


def _require_test_mode(session: Session, principal: Principal) -> None:
    if orgs.get_org(session, principal).mode != "test":
        raise LiveModeForbidsTestClocks()


def create(
    session: Session, principal: Principal, name: str | None, frozen_time: datetime, clock: Clock
) -> TestClock:
    _require_test_mode(session, principal)
    tc = TestClock(
        org_id=principal.org_id, id=new_id("tc"), name=name, frozen_time=frozen_time,
        status="ready", created_at=clock.now(),
    )  # fmt: skip
    session.add(tc)
    session.flush()
    return tc


def get(session: Session, principal: Principal, clock_id: str, *, lock: bool = False) -> TestClock:
    if not looks_like_id(clock_id, "tc"):
        raise TestClockNotFound()
    stmt = select(TestClock).where(TestClock.org_id == principal.org_id, TestClock.id == clock_id)
    if lock:
        stmt = stmt.with_for_update()
    tc = session.scalars(stmt).one_or_none()
    if tc is None:
        raise TestClockNotFound()
    return tc


def list_clocks(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[TestClock], bool, str | None]:
    stmt = select(TestClock).where(TestClock.org_id == principal.org_id)
    return paginate(session, stmt, TestClock.id, limit, cursor)


def frozen_time(session: Session, org_id: str, clock_id: str) -> datetime:
    value = session.scalar(
        select(TestClock.frozen_time).where(TestClock.org_id == org_id, TestClock.id == clock_id)
    )
    if value is None:
        raise TestClockNotFound()
    return value


def advance(
    session: Session, principal: Principal, clock_id: str, to: datetime, clock: Clock
) -> TestClock:
    """Move the clock forward; everything due on its customers happens, in order."""
    from kassa.invoicing import billing
    from kassa.subscriptions import engine

    _require_test_mode(session, principal)
    tc = get(session, principal, clock_id, lock=True)  # one advance at a time per clock
    if to <= tc.frozen_time:
        raise field_error("frozen_time", "must be later than the clock's current frozen_time")
    tc.status = "advancing"
    session.flush()
    engine.advance_test_clock(session, principal.org_id, tc.id, to, clock)
    billing.finalize_for_test_clock(session, principal.org_id, tc.id, to, clock)
    tc.frozen_time = to
    tc.status = "ready"
    session.flush()
    return tc
