"""API errors rendered as ``metav1.Status`` objects, with the messages kube-apiserver uses."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the fake API server answers with a ``Status`` object (and raises from direct calls)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        list_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.list_meta = list_meta or {}

    def status(self) -> dict[str, Any]:
        """The Status JSON exactly as kube-apiserver shapes it (empty fields omitted)."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(group_resource: str, name: str | None) -> dict[str, Any]:
    # details.kind is the *resource* (e.g. "pods") and group is separate, as in apierrors.NewNotFound.
    resource, _, group = group_resource.partition(".")
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = resource
    return d


def not_found(group_resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{group_resource} "{name}" not found', _details(group_resource, name))


def already_exists(group_resource: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{group_resource} "{name}" already exists', _details(group_resource, name)
    )


def conflict(group_resource: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {group_resource} "{name}": {why}',
        _details(group_resource, name),
    )


def forbidden(group_resource: str, name: str | None, why: str) -> ApiError:
    subject = f'{group_resource} "{name}"' if name else group_resource
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", _details(group_resource, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - "
        f"accepted media types include: application/json-patch+json, "
        f"application/merge-patch+json, application/strategic-merge-patch+json "
        f'(got "{content_type}")',
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid. ``causes`` are (field, reason, message) like field.ErrorList."""
    joined = ", ".join(f"{field}: {msg}" for field, _, msg in causes)
    message = (
        f'{kind} "{name}" is invalid: {joined}'
        if len(causes) == 1
        else f'{kind} "{name}" is invalid: [{joined}]'
    )
    return ApiError(
        422,
        "Invalid",
        message,
        {
            "name": name,
            "kind": kind,
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes],
        },
    )


def gone(message: str, list_meta: dict[str, Any] | None = None) -> ApiError:
    # apierrors.NewResourceExpired: reason "Expired", code 410.
    return ApiError(410, "Expired", message, list_meta=list_meta)


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)
