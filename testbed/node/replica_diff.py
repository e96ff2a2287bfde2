"""What differs in a page of the shared region at a checkpoint, word by word: the
replication daemon's evidence of a lost write.

Pure stdlib: imported by the daemon inside the boards and by the host's checks."""

from __future__ import annotations

from dataclasses import dataclass

PAGE = 4096
WORDS = PAGE // 8  # 64-bit words per page
MAX_PAGE_DIFFS = 16  # diffs per checkpoint


@dataclass(frozen=True)
class PageWord:
    """One 64-bit word of a page (little-endian, as hex) on each side."""

    index: int
    region: str
    replica: str


@dataclass(frozen=True)
class ReplicaPageDiff:
    """A page that differs at a checkpoint, between the region and the replica as the daemon
    gave it: how many words differ, the first and last that do (None when none does: the
    daemon gave the replica the region's page, and the destination holds something else),
    and the words at 0, at the first and last differing ones, and at the page's end."""

    page: int
    words_differing: int
    first_differing: int | None
    last_differing: int | None
    words: list[PageWord]

    def word(self, index: int) -> PageWord:
        return next(w for w in self.words if w.index == index)


def page_diff(page: int, region: bytes, replica: bytes) -> ReplicaPageDiff:
    """``region`` and ``replica``: the page on each side (PAGE bytes)."""

    def word(data: bytes, index: int) -> str:
        return f"{int.from_bytes(data[index * 8 : index * 8 + 8], 'little'):#018x}"

    differing = [i for i in range(WORDS) if region[i * 8 : i * 8 + 8] != replica[i * 8 : i * 8 + 8]]
    first = differing[0] if differing else None
    last = differing[-1] if differing else None
    at = sorted({0, WORDS - 1} | set(differing[:1] + differing[-1:]))
    return ReplicaPageDiff(
        page,
        len(differing),
        first,
        last,
        [PageWord(i, word(region, i), word(replica, i)) for i in at],
    )
