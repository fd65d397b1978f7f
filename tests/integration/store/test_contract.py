"""The store contract: every method, on both backends (see conftest: `store` is parametrized).

Expiry is observed by polling a condition against a deadline (`wait_for`), never by sleeping a fixed
time and hoping: the TTLs are short (0.2 s) so the polls end quickly.
"""

from __future__ import annotations

import pytest

from pulltag.store import OUTCOMES, AdmissionRecord, LedgerEntry, Outcome, Store
from tests.harness.procs import wait_for
from tests.integration.store.conftest import StoreFactory

SHORT = 0.2  # seconds: a TTL that expires quickly
DEADLINE = 5.0  # seconds: generous bound for an expiry to be observed


def record(uid: str = "uid-1", namespace: str = "prod", name: str = "web-1", **kw: object) -> AdmissionRecord:
    fields: dict[str, object] = {
        "images": {"containers": {"app": "harbor.example.com/team/app:1.0"}},
        "admitted_at": 1_700_000_000.0,
    }
    fields.update(kw)
    return AdmissionRecord(uid=uid, namespace=namespace, name=name, **fields)  # type: ignore[arg-type]


def entry(n: int = 0, **kw: object) -> LedgerEntry:
    fields: dict[str, object] = {
        "image": "harbor.example.com/team/app",
        "digest": f"sha256:{n:064x}",
        "tag": f"deployed_prod_{n}",
        "namespace": "prod",
        "pod": f"web-{n}",
        "node": "node-a",
        "pulled_at": 1_700_000_000.0 + n,
        "tagged_at": 1_700_000_000.5 + n,
        "outcome": "created",
    }
    fields.update(kw)
    return LedgerEntry(**fields)  # type: ignore[arg-type]


# --- admission records ---------------------------------------------------------------------------------
def test_put_get_roundtrip_with_every_container_kind(store: Store) -> None:
    rec = record(
        images={
            "containers": {"app": "harbor.example.com/team/app:1.0", "sidecar": "docker.io/library/nginx"},
            "initContainers": {"init": "registry.local:5000/init@sha256:" + "a" * 64},
            "ephemeralContainers": {"debug": "busybox:1.36"},
        },
        owner="ReplicaSet/web-5d8f",
        node="node-a",
        admitted_at=1_700_000_123.25,
    )
    store.put_admission(rec)
    got = store.get_admission("uid-1")
    assert got == rec
    assert got.image_of("initContainers", "init") == "registry.local:5000/init@sha256:" + "a" * 64
    assert got.image_of("ephemeralContainers", "debug") == "busybox:1.36"


def test_record_with_defaults_roundtrips(store: Store) -> None:
    rec = AdmissionRecord(uid="u", namespace="n", name="p")
    store.put_admission(rec)
    assert store.get_admission("u") == rec


def test_unicode_names_roundtrip(store: Store) -> None:
    rec = record(
        uid="uid-ü-😀",
        namespace="équipe-é",
        name="pod-名前-😀",
        images={"containers": {"конт": "reg.example/äpp:ß"}},
        owner="Deployment/naïve",
    )
    store.put_admission(rec)
    assert store.get_admission("uid-ü-😀") == rec
    assert store.find_admission("équipe-é", "pod-名前-😀") == rec
    assert store.list_admissions(namespace="équipe-é") == [rec]


def test_get_missing_is_none(store: Store) -> None:
    assert store.get_admission("nope") is None
    assert store.find_admission("prod", "nope") is None
    assert store.list_admissions() == []


def test_put_overwrites_same_uid(store: Store) -> None:
    store.put_admission(record(images={"containers": {"app": "a:1"}}))
    store.put_admission(record(images={"containers": {"app": "a:2"}}))
    got = store.get_admission("uid-1")
    assert got is not None and got.image_of("containers", "app") == "a:2"
    assert len(store.list_admissions()) == 1


def test_put_admissions_writes_a_batch(store: Store) -> None:
    batch = [record(uid=f"u{i}", name=f"web-{i}", admitted_at=float(i)) for i in range(50)]
    store.put_admissions(batch)
    assert [store.get_admission(r.uid) for r in batch] == batch
    assert store.find_admission("prod", "web-7") == batch[7]
    assert [r.uid for r in store.list_admissions(limit=3)] == ["u49", "u48", "u47"]


def test_put_admissions_same_uid_twice_keeps_the_last(store: Store) -> None:
    first = record(images={"containers": {"app": "a:1"}})
    second = record(images={"containers": {"app": "a:2"}, "ephemeralContainers": {"debug": "busybox"}})
    store.put_admissions([first, second])
    assert store.get_admission("uid-1") == second
    assert len(store.list_admissions()) == 1


def test_put_admissions_of_nothing_is_harmless(store: Store) -> None:
    store.put_admissions([])
    assert store.list_admissions() == []


def test_find_returns_newest_of_same_pod_name(store: Store) -> None:
    old = record(uid="old", admitted_at=100.0)
    new = record(uid="new", admitted_at=200.0)
    store.put_admission(old)
    store.put_admission(new)
    store.put_admission(record(uid="other-ns", namespace="dev", admitted_at=300.0))
    assert store.find_admission("prod", "web-1") == new
    assert store.get_admission("old") == old  # still there by uid
    assert store.find_admission("prod", "web-2") is None


def test_list_newest_first_with_namespace_and_limit(store: Store) -> None:
    for i, ns in enumerate(["a", "b", "a", "b", "a"]):
        store.put_admission(record(uid=f"u{i}", namespace=ns, name=f"p{i}", admitted_at=1000.0 + i))
    assert [r.uid for r in store.list_admissions()] == ["u4", "u3", "u2", "u1", "u0"]
    assert [r.uid for r in store.list_admissions(namespace="a")] == ["u4", "u2", "u0"]
    assert [r.uid for r in store.list_admissions(namespace="b", limit=1)] == ["u3"]
    assert [r.uid for r in store.list_admissions(limit=2)] == ["u4", "u3"]
    assert store.list_admissions(namespace="none") == []


def test_admission_expires_after_ttl(store: Store) -> None:
    store.put_admission(record(uid="short", name="s", admitted_at=2.0), ttl_seconds=SHORT)
    store.put_admission(record(uid="long", name="l", admitted_at=1.0), ttl_seconds=60)
    assert store.get_admission("short") is not None
    wait_for(lambda: store.get_admission("short") is None, DEADLINE, "the record to expire")
    assert store.find_admission("prod", "s") is None
    assert [r.uid for r in store.list_admissions()] == ["long"]
    assert [r.uid for r in store.list_admissions(namespace="prod")] == ["long"]
    # an expired uid can be written again and is live again
    store.put_admission(record(uid="short", name="s"), ttl_seconds=60)
    assert store.find_admission("prod", "s") is not None
    assert {r.uid for r in store.list_admissions()} == {"short", "long"}


def test_default_admission_ttl_is_the_configured_one(make_store: StoreFactory) -> None:
    store = make_store(admission_ttl_seconds=SHORT)
    store.put_admission(record())
    assert store.get_admission("uid-1") is not None
    wait_for(lambda: store.get_admission("uid-1") is None, DEADLINE, "the record to expire")


def test_find_falls_back_to_nothing_when_newest_expired(store: Store) -> None:
    store.put_admission(record(uid="a"), ttl_seconds=SHORT)
    wait_for(lambda: store.find_admission("prod", "web-1") is None, DEADLINE, "the record to expire")


# --- claims ---------------------------------------------------------------------------------------------
def test_claim_is_exclusive_until_released(store: Store) -> None:
    assert store.claim("k", 60) is True
    assert store.claim("k", 60) is False
    assert store.claim("other", 60) is True
    store.release("k")
    assert store.claim("k", 60) is True
    assert store.claim("k", 60) is False


def test_claim_expires(store: Store) -> None:
    assert store.claim("k", SHORT) is True
    assert store.claim("k", 60) is False
    wait_for(lambda: store.claim("k", 60), DEADLINE, "the claim to expire")
    assert store.claim("k", 60) is False  # the new claim holds


def test_release_of_unclaimed_key_is_harmless(store: Store) -> None:
    store.release("never-claimed")
    assert store.claim("never-claimed", 60) is True


def test_claims_two_store_objects_share_state(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    assert a.claim("k", 60) is True
    assert b.claim("k", 60) is False
    b.release("k")
    assert a.claim("k", 60) is True


def test_claim_with_unicode_key(store: Store) -> None:
    key = "harbor.example.com/équipe/app@sha256:00|😀"
    assert store.claim(key, 60) is True
    assert store.claim(key, 60) is False


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_rejected(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError):
        store.claim("k", ttl)
    with pytest.raises(ValueError):
        store.mark_seen("k", ttl)
    with pytest.raises(ValueError):
        store.put_admission(record(), ttl_seconds=ttl)


# --- seen markers ---------------------------------------------------------------------------------------
def test_mark_seen_is_true_only_the_first_time(store: Store) -> None:
    assert store.is_seen("e") is False
    assert store.mark_seen("e", 60) is True
    assert store.is_seen("e") is True
    assert store.mark_seen("e", 60) is False
    assert store.is_seen("f") is False


def test_seen_expires(store: Store) -> None:
    assert store.mark_seen("e", SHORT) is True
    wait_for(lambda: not store.is_seen("e"), DEADLINE, "the seen marker to expire")
    assert store.mark_seen("e", 60) is True


def test_claims_and_seen_markers_are_separate(store: Store) -> None:
    assert store.claim("x", 60) is True
    assert store.is_seen("x") is False
    assert store.mark_seen("x", 60) is True
    store.release("x")
    assert store.is_seen("x") is True


# --- ledger ---------------------------------------------------------------------------------------------
def test_ledger_roundtrip_every_outcome(store: Store) -> None:
    written = [
        entry(i, outcome=outcome, reason=f"because {outcome}", container="app")
        for i, outcome in enumerate(OUTCOMES)
    ]
    for e in written:
        store.append_ledger(e)
    assert store.query_ledger() == list(reversed(written))


def test_ledger_newest_first_by_tagged_at_not_insertion(store: Store) -> None:
    store.append_ledger(entry(1, tagged_at=300.0))
    store.append_ledger(entry(2, tagged_at=100.0))
    store.append_ledger(entry(3, tagged_at=200.0))
    assert [e.tagged_at for e in store.query_ledger()] == [300.0, 200.0, 100.0]


def test_ledger_equal_times_newest_written_first(store: Store) -> None:
    for i in range(3):
        store.append_ledger(entry(i, tagged_at=50.0))
    assert [e.tag for e in store.query_ledger()] == ["deployed_prod_2", "deployed_prod_1", "deployed_prod_0"]


def test_ledger_filters(store: Store) -> None:
    rows = [
        entry(0, image="r/a", digest="sha256:1", namespace="prod", tagged_at=10.0),
        entry(1, image="r/a", digest="sha256:2", namespace="dev", tagged_at=20.0),
        entry(2, image="r/b", digest="sha256:1", namespace="prod", tagged_at=30.0),
        entry(3, image="r/b", digest="sha256:3", namespace="dev", tagged_at=40.0),
        entry(4, image="r/a", digest="sha256:1", namespace="prod", tagged_at=50.0),
    ]
    for e in rows:
        store.append_ledger(e)

    def tags(**kw: object) -> list[int]:
        return [int(e.tag.rsplit("_", 1)[1]) for e in store.query_ledger(**kw)]  # type: ignore[arg-type]

    assert tags() == [4, 3, 2, 1, 0]
    assert tags(image="r/a") == [4, 1, 0]
    assert tags(image="r/") == []  # exact match, not prefix
    assert tags(digest="sha256:1") == [4, 2, 0]
    assert tags(namespace="dev") == [3, 1]
    assert tags(image="r/a", digest="sha256:1") == [4, 0]
    assert tags(image="r/a", namespace="dev") == [1]
    assert tags(image="r/b", digest="sha256:1", namespace="prod") == [2]
    assert tags(pod="web-1") == [1]
    assert tags(pod="web-") == []  # exact match, not prefix
    assert tags(image="r/a", digest="sha256:1", namespace="prod", pod="web-4") == [4]
    assert tags(digest="sha256:1", pod="web-1") == []  # every filter applies
    assert tags(since=20.0) == [4, 3, 2, 1]  # bounds are inclusive
    assert tags(until=30.0) == [2, 1, 0]
    assert tags(since=20.0, until=40.0) == [3, 2, 1]
    assert tags(since=20.0, until=40.0, namespace="prod") == [2]
    assert tags(since=60.0) == []
    assert tags(limit=2) == [4, 3]
    assert tags(image="r/a", limit=1) == [4]
    assert tags(limit=0) == []


def test_ledger_limit_with_sparse_filter(store: Store) -> None:
    # the filtered entries are far apart: a backend reading an index in pages must keep paging
    for i in range(450):
        store.append_ledger(
            entry(i, image="r/a", namespace="hit" if i % 150 == 0 else "miss", tagged_at=float(i))
        )
    got = store.query_ledger(image="r/a", namespace="hit")
    assert [e.tagged_at for e in got] == [300.0, 150.0, 0.0]


def test_ledger_pod_filter_finds_one_pod_among_many_of_a_digest(store: Store) -> None:
    # The catch-up under scope "every" asks for one pod's entries of a digest a DaemonSet spread over
    # hundreds of pods: the answer must not depend on how many newer entries the digest has.
    digest = f"sha256:{1:064x}"
    for i in range(450):
        store.append_ledger(entry(i, digest=digest, pod=f"ds-{i}", tagged_at=float(i)))
    found = store.query_ledger(digest=digest, namespace="prod", pod="ds-3", limit=5)
    assert [e.pod for e in found] == ["ds-3"]
    assert store.query_ledger(digest=digest, namespace="dev", pod="ds-3") == []
    assert store.query_ledger(digest=digest, pod="ds-450") == []


def test_ledger_is_bounded_oldest_dropped(make_store: StoreFactory) -> None:
    store = make_store(ledger_max_entries=3)
    images = ["r/a", "r/a", "r/b", "r/b", "r/c"]
    for i, image in enumerate(images):
        store.append_ledger(entry(i, image=image, tagged_at=100.0 + i))
    assert [e.tagged_at for e in store.query_ledger()] == [104.0, 103.0, 102.0]
    assert store.query_ledger(image="r/a") == []  # the dropped entries are gone from every filter too
    assert store.query_ledger(digest=f"sha256:{0:064x}") == []
    assert [e.image for e in store.query_ledger(namespace="prod")] == ["r/c", "r/b", "r/b"]
    # an entry older than everything kept is dropped at once
    store.append_ledger(entry(9, tagged_at=1.0))
    assert [e.tagged_at for e in store.query_ledger()] == [104.0, 103.0, 102.0]


def test_ledger_unicode(store: Store) -> None:
    e = entry(
        7,
        image="reg.example/équipe/äpp",
        namespace="prod-é",
        pod="pod-😀",
        reason="nein: über",
        container="名前",
    )
    store.append_ledger(e)
    assert store.query_ledger(image="reg.example/équipe/äpp") == [e]
    assert store.query_ledger(namespace="prod-é") == [e]


def test_ledger_unicode_survives_trimming(make_store: StoreFactory) -> None:
    store = make_store(ledger_max_entries=1)
    store.append_ledger(entry(1, image="r/😀", namespace="ns-é", tagged_at=1.0))
    store.append_ledger(entry(2, image="r/plain", tagged_at=2.0))
    assert store.query_ledger(image="r/😀") == []
    assert store.query_ledger(namespace="ns-é") == []
    assert [e.image for e in store.query_ledger()] == ["r/plain"]


def test_outcome_literal_values(store: Store) -> None:
    outcome: Outcome = "dry-run"
    store.append_ledger(entry(1, outcome=outcome))
    assert store.query_ledger()[0].outcome == "dry-run"


# --- lifecycle ------------------------------------------------------------------------------------------
def test_ping_and_close(make_store: StoreFactory) -> None:
    store = make_store()
    store.ping()  # raises StoreUnavailable unless the store answers
    assert store.claim("k", 60)
    store.close()
    store.close()  # idempotent: a second close raises nothing
    other = make_store()
    other.ping()
    assert not other.claim("k", 60)  # what the closed store wrote is kept


def test_store_usable_after_close(make_store: StoreFactory) -> None:
    # close() releases connections; a later call reconnects (the CLI closes, tests reuse)
    store = make_store()
    store.put_admission(record())
    store.close()
    assert store.get_admission("uid-1") is not None
