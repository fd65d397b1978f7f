"""Where a repository's tags point, as one client last saw them: tag -> digest per repository.

On a plain OCI registry the only way to learn which tags sit on a digest is to list the tags and HEAD each
candidate; without a memory every new digest costs one HEAD per existing prefixed tag, so a deploy costs
more the longer pulltag has run. Learned from the client's own HEADs, creates and deletes; bounded by an
LRU over repositories and a cap on the tags held in all.

Why trusting it is safe (`tags_to_head`): pulltag never moves a tag, so a tag it created or saw on one
digest stays there until it is deleted, and a deleted tag drops out of the next listing (`retain`). A
prefixed tag pulltag did not create could be moved by hand; the memory is only believed where a mistake is
harmless: a tag remembered on *another* digest is not looked at again (had it moved onto this digest, the
tagger would add one more tag to it: an extra tag, never a missing or moved one), while a tag remembered on
*this* digest is HEADed again before "already tagged" is answered, since that answer makes the tagger skip.
Nothing destructive reads the memory: `create_tag` and `delete_tag` always HEAD the tag itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence

MAX_REPOSITORIES = 1024
# ~300 bytes per entry: the memory stays under ~6 MB whatever the registries hold.
MAX_TAGS = 20_000


def tags_to_head(listed: Sequence[str], prefix: str, digest: str, known: Mapping[str, str]) -> list[str]:
    """The listed tags with `prefix` that must be HEADed to answer which of them point at `digest`: those
    never seen, and those remembered on `digest` (confirmed before an answer that makes the tagger skip).
    A tag remembered on another digest is not HEADed (see the module docstring)."""
    return [
        tag
        for tag in dict.fromkeys(listed)
        if tag.startswith(prefix) and (tag not in known or known[tag] == digest)
    ]


class TagMemory:
    """tag -> digest per repository; thread-safe; least recently used repositories are forgotten first."""

    def __init__(self, *, max_repositories: int = MAX_REPOSITORIES, max_tags: int = MAX_TAGS) -> None:
        if max_repositories < 1 or max_tags < 1:
            raise ValueError("TagMemory bounds must be at least 1")
        self.max_repositories = max_repositories
        self.max_tags = max_tags
        self._lock = threading.Lock()
        self._repositories: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        """Tags held, in all repositories."""
        with self._lock:
            return self._size

    def known(self, repository: str) -> dict[str, str]:
        """A copy of what is remembered of `repository` ({} when nothing)."""
        with self._lock:
            tags = self._repositories.get(repository)
            if tags is None:
                return {}
            self._repositories.move_to_end(repository)
            return dict(tags)

    def learn(self, repository: str, tag: str, digest: str) -> None:
        with self._lock:
            tags = self._repositories.get(repository)
            if tags is None:
                tags = self._repositories[repository] = {}
            self._repositories.move_to_end(repository)
            if tag not in tags:
                if len(tags) >= self.max_tags:
                    return  # one repository larger than the whole memory: its extra tags are HEADed
                self._size += 1
            tags[tag] = digest
            self._evict()

    def forget(self, repository: str, tag: str) -> None:
        with self._lock:
            tags = self._repositories.get(repository)
            if tags is not None and tags.pop(tag, None) is not None:
                self._size -= 1

    def retain(self, repository: str, listed: Collection[str]) -> None:
        """Forget the tags of `repository` that a complete listing no longer shows (deleted meanwhile)."""
        with self._lock:
            tags = self._repositories.get(repository)
            if not tags:
                return
            present = listed if isinstance(listed, set | frozenset) else set(listed)
            for tag in [t for t in tags if t not in present]:
                del tags[tag]
                self._size -= 1

    def _evict(self) -> None:
        """Drop least recently used repositories (never the most recent one) until within bounds."""
        while len(self._repositories) > 1 and (
            len(self._repositories) > self.max_repositories or self._size > self.max_tags
        ):
            _, tags = self._repositories.popitem(last=False)
            self._size -= len(tags)
