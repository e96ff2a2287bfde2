"""testbed.node.replica_diff: the words of a page that differs between the region and the
replica, as the daemon reports them at a checkpoint."""

from __future__ import annotations

from testbed.node.replica_diff import WORDS, page_diff
from tests.unit.guest_programs import tstaeshm_page


def word(write: int, page: int, index: int) -> str:
    return f"{(write << 24) ^ (page << 12) ^ index:#018x}"


def test_a_page_sent_mid_write() -> None:
    """The replica has the new write up to word 299 and the older one after."""
    region = tstaeshm_page(13, [4502] * 512)
    replica = tstaeshm_page(13, [4502] * 300 + [4410] * 212)
    diff = page_diff(13, region, replica)
    assert (diff.page, diff.words_differing) == (13, 212)
    assert (diff.first_differing, diff.last_differing) == (300, WORDS - 1)
    assert [w.index for w in diff.words] == [0, 300, 511]
    assert diff.word(0).region == diff.word(0).replica == word(4502, 13, 0)
    assert diff.word(300).region == word(4502, 13, 300)
    assert diff.word(300).replica == word(4410, 13, 300)
    assert diff.word(511).replica == word(4410, 13, 511)


def test_one_word_in_the_middle() -> None:
    region = tstaeshm_page(7, [20] * 512)
    replica = tstaeshm_page(7, [20] * 100 + [19] + [20] * 411)
    diff = page_diff(7, region, replica)
    assert (diff.words_differing, diff.first_differing, diff.last_differing) == (1, 100, 100)
    assert [w.index for w in diff.words] == [0, 100, 511]


def test_an_equal_page_has_no_differing_word() -> None:
    """The daemon gave the replica the region's page: what differs is the destination."""
    region = tstaeshm_page(2, [5] * 512)
    same = page_diff(2, region, region)
    assert same.words_differing == 0 and same.first_differing is None
    assert same.last_differing is None and [w.index for w in same.words] == [0, 511]
