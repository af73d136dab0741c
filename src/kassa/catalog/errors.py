from __future__ import annotations

from kassa.core.errors import Conflict, NotFound


class MeterNotFound(NotFound):
    code = "meter_not_found"
    title = "No such meter"


class PlanNotFound(NotFound):
    code = "plan_not_found"
    title = "No such plan"


class PlanVersionNotFound(NotFound):
    code = "plan_version_not_found"
    title = "No such plan version"


class CouponNotFound(NotFound):
    code = "coupon_not_found"
    title = "No such coupon"


class DuplicateCode(Conflict):
    code = "duplicate_code"
    title = "That code is already taken in this organization"


class CouponNotRedeemable(Conflict):
    code = "coupon_not_redeemable"
    title = "The coupon cannot be redeemed"
