"""errors.refused: one mapping from a refused response to a typed error, for the OCI and Harbor clients."""

from __future__ import annotations

import json

import pytest
import requests

from listener.registry.errors import (
    AuthenticationFailed,
    NotFound,
    PermanentError,
    PermissionDenied,
    PolicyRefused,
    refused,
)


def _response(status: int, body: object = None, request_id: str | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Reason"
    response._content = json.dumps(body).encode() if body is not None else b"plain text"
    if request_id:
        response.headers["X-Request-Id"] = request_id
    return response


@pytest.mark.parametrize(
    ("status", "error_cls", "explains"),
    [
        (401, AuthenticationFailed, "rejected the configured credentials"),
        (403, PermissionDenied, "lacks the permission"),
        (404, NotFound, "not found"),
        (405, PolicyRefused, "proxy-cache"),
        (412, PolicyRefused, "immutability rule"),
        (400, PermanentError, ""),
        (409, PermanentError, ""),
    ],
)
def test_status_gives_the_class_and_the_explanation(status: int, error_cls: type, explains: str) -> None:
    body = {"errors": [{"code": "CODE", "message": "the registry's words"}]}
    error = refused(
        _response(status, body, "req-1"), registry="r.example", what="creation of tag t", repository="p/a"
    )
    assert type(error) is error_cls
    assert (error.status, error.code, error.request_id, error.registry, error.repository) == (
        status,
        "CODE",
        "req-1",
        "r.example",
        "p/a",
    )
    assert str(error).startswith("r.example: creation of tag t refused in repository p/a")
    assert (
        explains in str(error)
        and "the registry's words" in str(error)
        and "[X-Request-Id req-1]" in str(error)
    )


def test_a_body_without_errors_still_names_the_status() -> None:
    error = refused(_response(403), registry="r.example", what="ping", repository="")
    assert str(error).startswith("r.example: ping refused: ") and "HTTP 403 Reason" in str(error)
    assert error.code is None and error.request_id is None
