"""The real webhook app with admission records discarded instead of written: the middle reference of
`bench/webhook.py`, between the constant app (gunicorn + TLS only) and the real webhook. Same serving
code (`webhook.serve.serve`), same app (`create_app`), same recorder and writer thread; only the store's
`put_admissions` does nothing. What it costs less than the webhook is the store write. Not part of the
product.

    python -P bench/discard_app.py --bind 127.0.0.1:9443 --certfile tls.crt --keyfile tls.key --db FILE
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.constant_app import serve_options, serving_parser
from pulltag.config import settings_from_dict
from pulltag.store.base import AdmissionRecord
from pulltag.store.sqlite import SQLiteStore
from webhook.serve import WSGIApp, prepare_multiprocess_metrics, serve

CONFIG = {"registries": [{"host": "harbor.example.com"}]}  # as bench/webhook.py


class DiscardingStore(SQLiteStore):
    """An SQLite store whose admission writes are dropped (bench only)."""

    def put_admissions(self, records: Sequence[AdmissionRecord], ttl_seconds: float | None = None) -> None:
        return None


def main() -> int:
    parser = serving_parser()
    parser.add_argument("--db", required=True, help="SQLite file (created, never written by admissions)")
    args = parser.parse_args()
    options = serve_options(args)
    prepare_multiprocess_metrics()  # as `pulltag webhook`: the metrics live in files shared by workers
    settings = settings_from_dict(CONFIG)

    def load_app() -> WSGIApp:
        from webhook.app import create_app  # after the fork and the metrics directory, as the webhook

        return create_app(settings, DiscardingStore(f"sqlite:///{args.db}"))

    return serve(options, load_app)


if __name__ == "__main__":
    raise SystemExit(main())
