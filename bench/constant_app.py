"""A constant-response WSGI app served by exactly the webhook's serving code (`webhook.serve.serve`):
the anchor `bench/webhook.py` compares the real webhook against. Not part of the product.

    python bench/constant_app.py --bind 127.0.0.1:9443 --certfile tls.crt --keyfile tls.key
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from pulltag.logs import setup_logging
from webhook.serve import ServeOptions, serve

BODY = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x","allowed":true}}'


def constant_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # Read the body as a real handler must, so both servers do the same socket work.
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def serving_parser() -> argparse.ArgumentParser:
    """The serving options every reference server of `bench/webhook.py` takes (also bench/discard_app.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    return parser


def serve_options(args: argparse.Namespace) -> ServeOptions:
    setup_logging("WARNING")
    return ServeOptions(
        bind=args.bind,
        certfile=args.certfile,
        keyfile=args.keyfile,
        workers=args.workers,
        threads=args.threads,
        log_level="warning",
    )


def main() -> int:
    return serve(serve_options(serving_parser().parse_args()), lambda: constant_app)


if __name__ == "__main__":
    raise SystemExit(main())
