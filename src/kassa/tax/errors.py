from __future__ import annotations

from kassa.core.errors import KassaError


class TaxError(KassaError):
    """Tax cannot be decided because of configuration or ruleset data, not the request.

    Raised for an unknown ruleset, a seller country outside the ruleset's region, a date before
    the first known rate, or malformed ruleset data. 409: the organization's state conflicts
    with what tax needs; the caller may wrap it in its own configuration error.
    """

    status = 409
    code = "tax_configuration_error"
    title = "Tax is not configured correctly"
