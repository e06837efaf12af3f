"""API errors as Kubernetes ``v1 Status`` objects.

Every failure the server reports is an :class:`ApiError`; the HTTP layer turns it
into a ``Status`` body with ``code``, ``reason`` and ``message`` worded like the
real API server, so kubectl and client libraries print and classify it the same way.
"""

from __future__ import annotations

from typing import Any

from lab.errors import LabError

__all__ = [
    "ApiError",
    "already_exists",
    "bad_request",
    "conflict",
    "forbidden",
    "gone",
    "invalid",
    "method_not_allowed",
    "not_found",
    "status_body",
    "success",
    "unsupported_media_type",
]

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
}


class ApiError(LabError):
    """A request the API refuses; ``code`` is the HTTP status, ``reason`` the Status reason."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``v1 Status`` body for this error."""
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if code < 400:
        body.pop("reason")
        if not message:
            body.pop("message")
    if details:
        body["details"] = details
    return body


def success(code: int = 200, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return status_body(code, "", "", details)


def _details(resource: str, name: str | None, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"kind": resource}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404, f'{_qualified(resource, group)} "{name}" not found', details=_details(resource, name, group)
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        f'{_qualified(resource, group)} "{name}" already exists',
        "AlreadyExists",
        _details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str = "", why: str = "") -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        "Conflict",
        _details(resource, name, group),
    )


def invalid(kind: str, name: str, field: str, problem: str, group: str = "") -> ApiError:
    """A 422 naming the field, like ``Pod "x" is invalid: metadata.name: Invalid value: ...``."""
    details = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": "FieldValueInvalid", "message": problem, "field": field}],
    }
    if group:
        details["group"] = group
    qualified = f"{kind}.{group}" if group else kind  # as Kubernetes writes it: StatefulSet.apps "db"
    return ApiError(422, f'{qualified} "{name}" is invalid: {field}: {problem}', "Invalid", details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def forbidden(message: str) -> ApiError:
    return ApiError(403, message, "Forbidden")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, f"the server does not allow this method on the requested resource ({method})")


def gone(message: str) -> ApiError:
    return ApiError(410, message, "Expired")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml (got {content_type!r})",
    )
