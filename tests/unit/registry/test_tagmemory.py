"""The tag memory and the decisions read from it: which tags to HEAD, when a DELETE was refused, which
actions a token asks for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.registry.auth import wanted_actions
from listener.registry.oci import refuses_tag_deletion
from listener.registry.tagmemory import TagMemory, tags_to_head

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("listed", "known", "expected"),
    [
        ([], {}, []),
        (["v1", "deployed_a"], {}, ["deployed_a"]),  # never seen: HEAD
        (["deployed_a"], {"deployed_a": D2}, []),  # seen elsewhere: not again
        (["deployed_a"], {"deployed_a": D1}, ["deployed_a"]),  # remembered here: confirmed before "yes"
        (["deployed_a", "deployed_b", "x"], {"deployed_a": D2}, ["deployed_b"]),
        (["deployed_a", "deployed_a"], {}, ["deployed_a"]),  # a listing repeating a tag: one HEAD
    ],
)
def test_tags_to_head(listed: list[str], known: dict[str, str], expected: list[str]) -> None:
    assert tags_to_head(listed, "deployed_", D1, known) == expected


tags = st.lists(st.sampled_from(["deployed_a", "deployed_b", "deployed_c", "v1", "latest"]), max_size=8)
memories = st.dictionaries(st.sampled_from(["deployed_a", "deployed_b", "v1"]), st.sampled_from([D1, D2]))


@given(tags, memories)
def test_every_prefixed_tag_is_headed_unless_remembered_on_another_digest(
    listed: list[str], known: dict[str, str]
) -> None:
    headed = tags_to_head(listed, "deployed_", D1, known)
    assert len(headed) == len(set(headed))
    for tag in set(listed):
        skipped = tag not in headed
        assert skipped == (not tag.startswith("deployed_") or known.get(tag, D1) != D1)


def test_memory_learns_forgets_and_retains_what_a_listing_shows() -> None:
    memory = TagMemory()
    memory.learn("r", "a", D1)
    memory.learn("r", "b", D2)
    memory.learn("r", "a", D2)  # the same tag again: not counted twice
    assert memory.known("r") == {"a": D2, "b": D2} and len(memory) == 2
    memory.retain("r", ["b", "c"])
    assert memory.known("r") == {"b": D2} and len(memory) == 1
    memory.forget("r", "b")
    memory.forget("r", "never")
    assert memory.known("r") == {} and len(memory) == 0
    assert memory.known("unknown") == {}


def test_least_recently_used_repositories_go_first() -> None:
    memory = TagMemory(max_repositories=2)
    memory.learn("old", "a", D1)
    memory.learn("used", "a", D1)
    memory.known("old")  # a read counts as a use
    memory.learn("new", "a", D1)
    assert memory.known("used") == {}
    assert memory.known("old") == {"a": D1} and memory.known("new") == {"a": D1}


def test_the_tag_cap_evicts_whole_repositories_and_bounds_a_huge_one() -> None:
    memory = TagMemory(max_tags=3)
    for tag in "abc":
        memory.learn("first", tag, D1)
    memory.learn("second", "x", D1)
    assert memory.known("first") == {} and len(memory) == 1
    for n in range(10):
        memory.learn("second", f"t{n}", D1)
    assert len(memory) == 3  # larger than the memory: the rest is HEADed each time, never wrong


@given(st.lists(st.tuples(st.sampled_from("rstuvw"), st.sampled_from("abcdefg")), max_size=60))
def test_bounds_hold_whatever_is_learned(steps: list[tuple[str, str]]) -> None:
    memory = TagMemory(max_repositories=3, max_tags=5)
    for repository, tag in steps:
        memory.learn(repository, tag, D1)
        assert len(memory) <= 5
        assert sum(len(memory.known(r)) for r in "rstuvw") == len(memory)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TagMemory(max_repositories=0)


@pytest.mark.parametrize(
    ("status", "codes", "refused"),
    [
        (405, ["UNSUPPORTED"], True),  # distribution 2.8, storage.delete off
        (400, ["DIGEST_INVALID"], True),  # distribution 2.8, storage.delete on: a tag is not a digest
        (405, [], True),
        (400, ["UNSUPPORTED"], True),
        (400, ["TAG_INVALID"], False),
        (403, ["DENIED"], False),
        (404, ["MANIFEST_UNKNOWN"], False),
        (500, [], False),
    ],
)
def test_which_answers_refuse_tag_deletion(status: int, codes: list[str], refused: bool) -> None:
    assert refuses_tag_deletion(status, codes) is refused


@pytest.mark.parametrize(
    ("resource", "needs", "wanted"),
    [
        ("", frozenset(), frozenset()),
        ("repository:a", frozenset({"pull"}), frozenset({"pull", "push"})),
        ("repository:a", frozenset({"pull", "push"}), frozenset({"pull", "push"})),
        ("repository:a", frozenset({"delete"}), frozenset({"pull", "push", "delete"})),
    ],
)
def test_a_repository_token_asks_for_pull_and_push_at_once(
    resource: str, needs: frozenset[str], wanted: frozenset[str]
) -> None:
    assert wanted_actions(resource, needs) == wanted
