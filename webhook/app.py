"""The webhook's Flask app. Views only decode the body and encode the answer; `review.py` decides.

Routes: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`, `GET /metrics`.

Client mistakes are answered as JSON with a 4xx status and never reach a 5xx: 415 for a content type other
than application/json, 413 for a body over `webhook.max_body_bytes` (decided from Content-Length before
reading, and by a capped read for chunked bodies), 400 for anything that is not a usable AdmissionReview,
404/405 for unknown routes and methods.

Serving: `POST /mutate` and `POST /validate` (every admission) are answered by `AdmissionRoutes`, a thin
WSGI layer in front of Flask: Flask's request and app contexts, routing and response objects cost about as
much CPU per request as the decision and the record together. Every other request (health, metrics, a
wrong method or path) goes on to Flask, which also keeps its routes for the two views so a wrong method
gets its 405.

Readiness: `/readyz` answers 200 whenever this process serves requests over TLS. It deliberately does not
look at the store: the webhook never blocks a pod on the store (writes have a time budget and failures are
only counted), so taking the webhook out of the Service while the store is down would only turn a missing
record into failed admission calls.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length

from pulltag.config import Settings
from pulltag.store.base import Store
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.recorder import Recorder, WriteResult, write_lock_for
from webhook.review import BadReview, Decision, Review, decide_mutate, decide_validate, parse_review

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
# One encoder for every answer: json.dumps with non-default arguments builds a new encoder per call.
# ASCII-only (the default): a lone surrogate from a client string would not encode as UTF-8.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_STATUS_LINES = {200: "200 OK", 400: "400 BAD REQUEST", 413: "413 REQUEST ENTITY TOO LARGE"}
_STATUS_LINES |= {415: "415 UNSUPPORTED MEDIA TYPE", 500: "500 INTERNAL SERVER ERROR"}
_CLIENT_OUTCOMES = {400: "bad_request", 413: "too_large", 415: "bad_content_type"}

Answer = tuple[int, bytes]  # HTTP status and JSON body
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ClientError(Exception):
    """A request the client got wrong: answered with `status` and `message`, never logged as a crash."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(_ENCODE(payload), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return json_response({"status": status, "error": message}, status)


def _error_answer(status: int, message: str) -> Answer:
    return status, _ENCODE({"status": status, "error": message}).encode()


def request_mimetype(environ: dict[str, Any]) -> str:
    """The Content-Type without parameters, lower case, as Flask's `request.mimetype`."""
    value = str(environ.get("CONTENT_TYPE", ""))
    if value == "application/json":  # what the API server sends: no parsing needed
        return value
    return parse_options_header(value)[0].lower()


def read_body(stream: BinaryIO, content_length: int | None, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` without reading more than limit + 1 bytes."""
    if content_length is not None and content_length > limit:
        raise ClientError(413, f"body of {content_length} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise ClientError(413, f"body exceeds the limit of {limit} bytes")
    return b"".join(chunks)


def decode_review(body: bytes) -> Review:
    try:
        value = json.loads(body)
    except RecursionError:
        # Python's json parser recurses per nesting level; a deeply nested body is an attack, not a review.
        raise ClientError(400, "the body nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many integer digits
        raise ClientError(400, f"the body is not valid JSON: {_clip(str(exc))}") from None
    try:
        return parse_review(value)
    except BadReview as exc:
        raise ClientError(400, _clip(str(exc))) from None
    except RecursionError:
        raise ClientError(400, "the body nests too deeply") from None


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WebhookHandlers:
    """The per-process state of the views: settings, the store writer and the metrics."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.recorder = Recorder(
            store, settings.webhook.store_budget_seconds, write_lock=write_lock_for(store.url)
        )

    def registry_known(self, host: str) -> bool:
        return self.settings.registry_for(host) is not None

    def admit(self, webhook: str, decide: Callable[[Review], Decision], environ: dict[str, Any]) -> Answer:
        """Answer one admission request given as a WSGI environ: status and JSON body."""
        started = time.perf_counter()
        outcome = "error"
        try:
            if request_mimetype(environ) != "application/json":
                raise ClientError(415, "Content-Type must be application/json")
            body = read_body(
                environ["wsgi.input"], get_content_length(environ), self.settings.webhook.max_body_bytes
            )
            decision = decide(decode_review(body))
            outcome = decision.outcome
            return 200, _ENCODE(decision.response).encode()
        except ClientError as exc:
            outcome = _CLIENT_OUTCOMES.get(exc.status, "error")
            log.warning(
                "admission request refused: webhook=%s status=%d reason=%s",
                webhook,
                exc.status,
                exc.message,
                extra={"fields": {"webhook": webhook, "status": exc.status, "reason": exc.message}},
            )
            return _error_answer(exc.status, exc.message)
        finally:
            self.metrics.admitted(webhook, outcome, time.perf_counter() - started)

    def validate(self, review: Review) -> Decision:
        decision = decide_validate(review, self.registry_known, time.time())
        if decision.record is None:
            return decision
        result, reason = self.recorder.put_admission(decision.record)
        if result is WriteResult.OK:
            return decision
        self.metrics.store_errors.labels("put_admission").inc()
        record = decision.record
        log.warning(
            "admission record not written: result=%s pod=%s/%s uid=%s reason=%s",
            result.value,
            record.namespace,
            record.name,
            record.uid,
            reason,
            extra={
                "fields": {
                    "operation": "put_admission",
                    "result": result.value,
                    "namespace": record.namespace,
                    "pod": record.name,
                    "uid": record.uid,
                    "reason": reason,
                }
            },
        )
        return Decision(decision.response, f"store_{result.value}", warnings=decision.warnings)


class AdmissionRoutes:
    """`POST /mutate` and `POST /validate` answered straight from the WSGI environ; anything else is passed
    to `fallback` (the Flask app). An unexpected exception is logged and answered 500 in JSON, as Flask's
    handler would."""

    def __init__(self, handlers: WebhookHandlers, fallback: WSGIApp) -> None:
        self._fallback = fallback
        self._views: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "/mutate": lambda environ: handlers.admit("mutate", decide_mutate, environ),
            "/validate": lambda environ: handlers.admit("validate", handlers.validate, environ),
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        view = self._views.get(environ.get("PATH_INFO", ""))
        if view is None or environ.get("REQUEST_METHOD") != "POST":
            return self._fallback(environ, start_response)
        try:
            status, body = view(environ)
        except Exception as exc:
            log.exception("unhandled error in the webhook: %s", type(exc).__name__)
            status, body = _error_answer(500, "internal error")
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(_STATUS_LINES[status], headers)
        return [body]


def create_app(settings: Settings, store: Store, metrics: Metrics | None = None) -> Flask:
    """The WSGI app for one process. `store` is used from the recorder's writer thread and must be
    thread-safe. The admission views are served by `AdmissionRoutes` in front of Flask (`app.wsgi_app`)."""
    app = Flask("pulltag-webhook")
    handlers = WebhookHandlers(settings, store, metrics or Metrics())
    app.extensions["pulltag"] = handlers

    def flask_view(webhook: str, decide: Callable[[Review], Decision]) -> Response:
        # Reached only if a request bypasses AdmissionRoutes (it answers every POST to these paths).
        status, body = handlers.admit(webhook, decide, request.environ)
        return Response(body, status=status, mimetype="application/json")

    @app.post("/mutate")
    def mutate() -> Response:
        return flask_view("mutate", decide_mutate)

    @app.post("/validate")
    def validate() -> Response:
        return flask_view("validate", handlers.validate)

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        return json_response({"status": "ready"})

    @app.get("/metrics")
    def metrics_view() -> Response:
        return Response(handlers.metrics.render(), mimetype=None, content_type=CONTENT_TYPE)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        return _error(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Response:
        # Should never happen: every client mistake is a ClientError. Logged with the traceback.
        log.exception("unhandled error in the webhook: %s", type(exc).__name__)
        return _error(500, "internal error")

    app.wsgi_app = AdmissionRoutes(handlers, app.wsgi_app)  # type: ignore[method-assign]
    return app
