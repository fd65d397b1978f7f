"""Tag listing against small local servers that page the way other registries do."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from listener.registry import OciClient, RetryPolicy
from pulltag.config import RegistrySettings

TAGS = [f"tag{n:03d}" for n in range(250)]


class PagingServer:
    """Serves /v2/app/tags/list in one of three styles."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.hits += 1
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                n = int(query.get("n", [str(len(TAGS))])[0])
                last = query.get("last", [""])[0]
                headers: dict[str, str] = {}
                if server.style == "paged":  # honours n/last, relative Link (distribution 3)
                    rest = [t for t in TAGS if t > last]
                    page = rest[:n]
                    if len(rest) > n:
                        headers["Link"] = f'</v2/app/tags/list?n={n}&last={page[-1]}>; rel="next"'
                elif server.style == "ignores-last":  # always the first page, always a next link
                    page = TAGS[:n]
                    if "n" in query:
                        headers["Link"] = f'</v2/app/tags/list?n={n}&last={page[-1]}>; rel="next"'
                else:  # "everything": ignores n, unsorted, no Link (distribution 2.8)
                    page = list(reversed(TAGS))
                body = json.dumps({"name": "app", "tags": page}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["paged", "ignores-last", "everything"])
def paging_server(request: pytest.FixtureRequest) -> Iterator[PagingServer]:
    server = PagingServer(request.param)
    yield server
    server.stop()


def test_every_tag_is_listed_once(paging_server: PagingServer) -> None:
    settings = RegistrySettings(host=paging_server.host, insecure=True)
    with OciClient(settings, retry=RetryPolicy(attempts=1), page_size=100) as client:
        tags = client.list_tags("app")
    assert sorted(tags) == TAGS and len(tags) == len(TAGS)
    # paged: 3 pages; ignores-last: first page, the same page again, then once without `n`
    assert paging_server.hits == {"paged": 3, "ignores-last": 3, "everything": 1}[paging_server.style]
