from __future__ import annotations

from kassa.core.errors import Conflict, NotFound


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    title = "No such customer"


class ExternalIdTaken(Conflict):
    code = "external_id_taken"
    title = "Another customer already has this external_id"


class CustomerDeleted(Conflict):
    code = "customer_deleted"
    title = "The customer is deleted; restore it first"


class RestoreWindowPassed(Conflict):
    code = "restore_window_passed"
    title = "Deleted customers can be restored for 30 days only"


class CustomerHasSubscriptions(Conflict):
    code = "customer_has_subscriptions"
    title = "Cancel the customer's subscriptions before deleting the customer"


class CustomerAnonymized(Conflict):
    code = "customer_anonymized"
    title = "The customer was anonymized; personal data can no longer change"
