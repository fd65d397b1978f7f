"""The `pulltag` command. Subcommands that belong to a half (webhook, listener) are imported lazily,
so the shared core never imports `webhook` or `listener` at module level."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from pulltag import __version__
from pulltag.config import ConfigError, Settings, check_registry_files, load_settings
from pulltag.logs import setup_logging

if TYPE_CHECKING:
    from pulltag.store import AdmissionRecord, LedgerEntry, Store

EXIT_CONFIG = 2

Handler = Callable[[argparse.Namespace, Settings], int]


def _lazy(target: str) -> Handler:
    """A handler that imports `module:function` only when the subcommand runs."""
    module_name, _, function_name = target.partition(":")

    def run(args: argparse.Namespace, settings: Settings) -> int:
        module = importlib.import_module(module_name)
        handler: Handler = getattr(module, function_name)
        return handler(args, settings)

    return run


def _common(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """The global options. They are accepted before the subcommand (`top`, with the defaults) and after
    it; after it they are SUPPRESSed when absent, so an option given before is not reset by the default."""

    def default(value: str | None) -> str | None:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--config",
        default=default(None),
        help="YAML configuration file (default: $PULLTAG_CONFIG, else defaults)",
    )
    parser.add_argument(
        "--log-level", default=default("INFO"), help="DEBUG, INFO, WARNING, ERROR (default INFO)"
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default=default("text"), help="log line format"
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line in one table-like function: longer than most, on purpose, so that every
    subcommand and option can be read in one place (each line only declares an argument)."""
    parser = argparse.ArgumentParser(
        prog="pulltag",
        description="Tag container images in their registry once Kubernetes has really pulled them.",
    )
    parser.add_argument("--version", action="version", version=f"pulltag {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("webhook", help="serve the admission webhook (gunicorn over TLS)")
    _common(p)
    p.add_argument("--bind", default="0.0.0.0:8443", help="address to listen on (default 0.0.0.0:8443)")
    p.add_argument("--certfile", default="/etc/pulltag/tls/tls.crt", help="serving certificate (PEM)")
    p.add_argument("--keyfile", default="/etc/pulltag/tls/tls.key", help="serving key (PEM)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    p.add_argument("--cert-reload-seconds", type=float, default=10.0, help="how often to look for new certs")
    p.set_defaults(handler=_lazy("webhook.serve:run"))

    p = sub.add_parser("listener", help="watch Pulled events and tag what really ran")
    _common(p)
    p.add_argument("--metrics-bind", default="0.0.0.0:9090", help="/healthz, /readyz, /metrics address")
    p.add_argument("--dry-run", action="store_true", help="do everything but registry writes and Events")
    p.add_argument("--no-leader-election", action="store_true", help="run without the Lease (one replica)")
    p.add_argument("--namespace", default=None, help="own namespace for the Lease (default: in-cluster)")
    p.add_argument(
        "--manage-webhook-certificates",
        action="store_true",
        help="keep the webhook's CA, serving certificate and caBundles in the cluster (when leading)",
    )
    p.set_defaults(handler=_lazy("listener.main:run"), uses_registries=True)

    p = sub.add_parser("certs", help="generate the CA and the webhook's serving certificate")
    _common(p)
    p.add_argument("--out", default="certs/out", help="output folder (default certs/out)")
    p.add_argument("--service", default="pulltag-webhook", help="Service name (default pulltag-webhook)")
    p.add_argument("--namespace", default="pulltag-system", help="namespace (default pulltag-system)")
    p.add_argument("--days", type=int, default=365, help="leaf validity in days (default 365)")
    p.add_argument("--ca-days", type=int, default=3650, help="CA validity in days (default 3650)")
    p.add_argument("--renew-within-days", type=int, default=30, help="renew the leaf when it expires sooner")
    p.add_argument("--force", action="store_true", help="regenerate the CA and the leaf")
    p.add_argument("--secret-name", default="pulltag-webhook-tls", help="name of the TLS Secret manifest")
    p.set_defaults(handler=_lazy("pulltag.certs:run"))

    p = sub.add_parser("admissions", help="list recorded admissions from the store")
    _common(p)
    p.add_argument("--namespace", default=None, help="only this namespace")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    p.set_defaults(handler=cmd_admissions)

    p = sub.add_parser("history", help="show the tag ledger, newest first")
    _common(p)
    p.add_argument("--namespace", default=None, help="only this namespace")
    p.add_argument("--image", default=None, help="only this image (any reference form; a digest narrows it)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    p.set_defaults(handler=cmd_history)

    p = sub.add_parser("inventory", help="digests running now, and the tags that protect them")
    _common(p)
    p.add_argument("--namespace", default=None, help="only this namespace")
    p.add_argument("--image", default=None, help="only this image (any reference form; a digest narrows it)")
    p.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    p.set_defaults(handler=cmd_inventory)

    p = sub.add_parser("tag", help="create TAG on the digest of IMAGE_REF through the configured registry")
    _common(p)
    p.add_argument("image", metavar="IMAGE_REF", help="image reference (tag or digest)")
    p.add_argument("tag", metavar="TAG", help="the new tag")
    p.set_defaults(handler=_lazy("listener.registry.cli:run_tag"), uses_registries=True)

    p = sub.add_parser("registry", help="registry tools")
    _common(p)
    p.set_defaults(help_parser=p)
    rsub = p.add_subparsers(dest="registry_command", metavar="COMMAND")
    pc = rsub.add_parser(
        "check", help="check each configured registry: reachable, authenticated, push allowed"
    )
    _common(pc)
    pc.add_argument("--repository", default=None, help="repository to check push rights on")
    pc.set_defaults(handler=_lazy("listener.registry.cli:run_check"), uses_registries=True)
    _retention_commands(sub)
    return parser


def _retention_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pulltag.retention_policy import REGISTRIES

    p = sub.add_parser("retention", help="release of pulltag's own stale tags, registry-native rules")
    _common(p)
    p.set_defaults(help_parser=p)
    rsub = p.add_subparsers(dest="retention_command", metavar="COMMAND")
    pp = rsub.add_parser("plan", help="every tag pulltag created: keep or release, and the reason")
    _common(pp)
    pp.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    pp.set_defaults(handler=_lazy("listener.retention_cli:run_plan"))
    pa = rsub.add_parser("apply", help="run one release pass now (needs retention.enabled)")
    _common(pa)
    pa.set_defaults(handler=_lazy("listener.retention_cli:run_apply"), uses_registries=True)
    po = rsub.add_parser("policy", help="the registry's own rule keeping every tag with the prefix")
    _common(po)
    po.add_argument("registry", choices=REGISTRIES, help="the registry product")
    po.set_defaults(handler=cmd_retention_policy)


def cmd_retention_policy(args: argparse.Namespace, settings: Settings) -> int:
    from pulltag.retention_policy import policy_text

    print(policy_text(args.registry, settings.tagging.prefix), end="")
    return 0


def open_existing_store(settings: Settings) -> Store:
    """The configured store for a read-only command: one that does not exist is an error, not created."""
    from pulltag.store import open_store

    return open_store(settings.store, create=False)


def _print_json(items: Sequence[AdmissionRecord | LedgerEntry]) -> None:
    """One JSON array, one record per line; `[]` when there is none."""
    lines = [json.dumps(asdict(item), sort_keys=True) for item in items]
    print("[" + ",\n ".join(lines) + "]")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def cmd_admissions(args: argparse.Namespace, settings: Settings) -> int:
    store = open_existing_store(settings)
    try:
        records = store.list_admissions(namespace=args.namespace, limit=args.limit)
    finally:
        store.close()
    if args.json:
        _print_json(records)
        return 0
    rows = []
    for r in records:
        images = ", ".join(f"{name}={image}" for kind in r.images.values() for name, image in kind.items())
        rows.append([_when(r.admitted_at), r.namespace, r.name, r.node or "-", images])
    print(_table(rows, ["ADMITTED (UTC)", "NAMESPACE", "POD", "NODE", "IMAGES"]) if rows else "no admissions")
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    from pulltag.images import InvalidReference, parse_reference

    image: str | None = None
    digest: str | None = None
    if args.image:
        try:
            ref = parse_reference(args.image)
        except InvalidReference as exc:
            print(f"pulltag history: --image: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        image = f"{ref.registry}/{ref.repository}"
        digest = ref.digest
    store = open_existing_store(settings)
    try:
        entries = store.query_ledger(image=image, digest=digest, namespace=args.namespace, limit=args.limit)
    finally:
        store.close()
    if args.json:
        _print_json(entries)
        return 0
    rows = [
        [_when(e.tagged_at), e.outcome, e.namespace, e.pod, f"{e.image}@{e.digest[:19]}…", e.tag, e.reason]
        for e in entries
    ]
    header = ["TAGGED (UTC)", "OUTCOME", "NAMESPACE", "POD", "IMAGE", "TAG", "REASON"]
    print(_table(rows, header) if rows else "no tag history")
    return 0


def cmd_inventory(args: argparse.Namespace, settings: Settings) -> int:
    from pulltag import inventory_report as report

    wanted = _image_filter("inventory", args.image)
    if wanted is None:
        return EXIT_CONFIG
    store = open_existing_store(settings)
    try:
        last = store.last_inventory_pass()
        found = store.inventory(image=wanted[0], digest=wanted[1], namespace=args.namespace)
        rows = report.group(
            report.running_now(found, last), lambda i, d: store.query_ledger(image=i, digest=d, limit=10_000)
        )
    finally:
        store.close()
    if args.json:
        print("[" + ",\n ".join(json.dumps(report.as_json(row), sort_keys=True) for row in rows) + "]")
    elif last is None:
        print("no complete inventory pass yet (the listener's leader makes one every inventory interval)")
    else:
        print(f"running at the last complete inventory pass ({_when(last.started_at)} UTC)")
        print(_table([report.as_cells(r, _when) for r in rows], report.HEADER) if rows else "nothing running")
    return 0


def _image_filter(command: str, text: str | None) -> tuple[str | None, str | None] | None:
    """(registry/repository, digest) of `--image` (both None without it); None after printing why the
    reference is refused."""
    from pulltag.images import InvalidReference, parse_reference

    if not text:
        return None, None
    try:
        ref = parse_reference(text)
    except InvalidReference as exc:
        print(f"pulltag {command}: --image: {exc}", file=sys.stderr)
        return None
    return f"{ref.registry}/{ref.repository}", ref.digest


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        # `pulltag` or `pulltag registry` alone: show what there is to run.
        target: argparse.ArgumentParser = getattr(args, "help_parser", parser)
        target.print_help()
        return EXIT_CONFIG
    setup_logging(args.log_level, args.log_format)
    try:
        settings = load_settings(args.config)
        if getattr(args, "uses_registries", False):
            check_registry_files(settings)
    except ConfigError as exc:
        print(f"pulltag: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return _run(handler, args, settings)


def _run(handler: Handler, args: argparse.Namespace, settings: Settings) -> int:
    from pulltag.store import StoreError

    try:
        return handler(args, settings)
    except ConfigError as exc:
        print(f"pulltag: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"pulltag: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
