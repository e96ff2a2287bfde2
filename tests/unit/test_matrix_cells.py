"""Cells (the cartesian product, checked values) and shards (every pair in exactly one)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.errors import UserError
from testbed.matrix.cells import Shard, expand, link_bps, pairs, parse_shard
from testbed.matrix.records import Cell


def cells_of(n: int) -> list[Cell]:
    return [Cell("migration", "bookworm", "armv7", 1, f"hot:{i + 1}", "tcg") for i in range(n)]


def test_expand_is_the_product_in_a_stable_order() -> None:
    cells = expand(
        suites=["bookworm-backports", "bookworm"],
        arches=["armv7", "armv8"],
        smps=[1, 2],
        loads=["seed", "hot:256"],
        accels=["tcg"],
        scenario="migration",
        hold_s=5,
        bandwidth="100mbit",
    )
    assert len(cells) == 2 * 2 * 2 * 2
    assert cells[0] == Cell(
        "migration", "bookworm-backports", "armv7", 1, "seed", "tcg", 5.0, "100mbit"
    )
    assert cells[1].load == "hot:256" and cells[2].smp == 2 and cells[4].arch == "armv8"
    assert cells[8].suite == "bookworm"
    assert isinstance(cells[0].hold_s, float)
    again = expand(["bookworm-backports", "bookworm"], ["armv7", "armv8"], [1, 2],
                   ["seed", "hot:256"], ["tcg"], "migration", 5, "100mbit")  # fmt: skip
    assert again == cells
    assert len({c.key for c in cells}) == len(cells)


def test_expand_drops_repeated_values() -> None:
    cells = expand(["bookworm", "bookworm"], ["armv7"], [2, 2], ["dirty"], ["tcg"], "shmem")
    assert [c.key for c in cells] == ["shmem/bookworm/armv7/smp2/dirty/tcg/hold0/unshaped"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"suites": ["sid"]}, "--suite sid: unknown QEMU suite: use one of bookworm, "),
        ({"arches": ["armv9"]}, "--arch armv9: unknown guest architecture: use one of armv7"),
        ({"smps": [0]}, "--smp 0 is out of range: use 1 to 8"),
        ({"smps": [9]}, "--smp 9 is out of range: use 1 to 8"),
        ({"accels": ["hvf"]}, "--accel hvf: unknown accelerator: use one of tcg, kvm, auto"),
        ({"scenario": "boot"}, "--scenario boot: unknown scenario: use migration or shmem"),
        ({"loads": ["dirty"]}, "--load dirty: 'dirty' is not a migration load: use one of"),
        ({"loads": ["hot 256"]}, "--load 'hot 256': not a load text: use MODE"),
        ({"loads": ["seed+"]}, "--load 'seed+': not a load text"),
        ({"hold_s": -1.0}, "--hold -1.0 is out of range"),
        ({"bandwidth": "fast"}, "--bandwidth fast: not a rate: use a number with kbit"),
        ({"arches": []}, "--arch: no value given"),
    ],
)
def test_bad_values_are_one_line(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "suites": ["bookworm"],
        "arches": ["armv7"],
        "smps": [1],
        "loads": ["hot:256"],
        "accels": ["tcg"],
        "scenario": "migration",
        "hold_s": 0.0,
        "bandwidth": None,
    }
    args.update(kwargs)
    with pytest.raises(UserError) as info:
        expand(**args)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text and text.startswith(message), text


def test_shmem_loads() -> None:
    cells = expand(["bookworm"], ["armv8"], [1], ["dirty", "remap"], ["tcg"], "shmem")
    assert [c.load for c in cells] == ["dirty", "remap"]
    with pytest.raises(UserError, match="'hot' is not a shmem load"):
        expand(["bookworm"], ["armv8"], [1], ["hot:256"], ["tcg"], "shmem")


def test_link_bps() -> None:
    assert link_bps("100mbit") == 100_000_000
    assert link_bps("1gbit") == 1_000_000_000
    assert link_bps("2.5gbit") == 2_500_000_000
    assert link_bps(None) is None and link_bps("0mbit") is None and link_bps("1gb") is None


def test_pairs_are_run_major() -> None:
    cells = cells_of(2)
    assert pairs(cells, 2) == [(cells[0], 1), (cells[1], 1), (cells[0], 2), (cells[1], 2)]
    with pytest.raises(UserError, match="--runs 0 is out of range"):
        pairs(cells, 0)


@pytest.mark.parametrize(("text", "shard"), [("2/5", Shard(2, 5)), ("1/1", Shard(1, 1)),
                                             (" 3 / 3 ", Shard(3, 3))])  # fmt: skip
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == f"{shard.index}/{shard.count}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("6/5", "--shard 6/5: index must be 1 to 5: use I/N with 1 <= I <= N"),
        ("0/5", "--shard 0/5: index must be 1 to 5: use I/N with 1 <= I <= N"),
        ("1/0", "--shard 1/0: N must be at least 1: use I/N with 1 <= I <= N"),
        ("-1/2", "--shard -1/2: index must be 1 to 2: use I/N with 1 <= I <= N"),
        ("2", "--shard 2: not of the form I/N: use I/N with 1 <= I <= N"),
        ("a/b", "--shard a/b: not of the form I/N: use I/N with 1 <= I <= N"),
    ],
)
def test_bad_shards_are_one_line(text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_shard(text)
    assert str(info.value) == message


@settings(database=None)  # no .hypothesis directory in the tree
@given(cells=st.integers(0, 40), runs=st.integers(1, 7), count=st.integers(1, 12))
def test_shards_partition_the_pairs_and_are_balanced(cells: int, runs: int, count: int) -> None:
    every = pairs(cells_of(cells), runs)
    shares = [Shard(i, count).select(every) for i in range(1, count + 1)]
    flat = [p for share in shares for p in share]
    assert sorted(flat, key=lambda p: (p[0].key, p[1])) == sorted(
        every, key=lambda p: (p[0].key, p[1])
    )  # the union is every pair, none twice
    assert len(flat) == len(set(flat)) == len(every)
    sizes = [len(share) for share in shares]
    assert max(sizes) - min(sizes) <= 1
    for share in shares:  # each keeps the overall order
        assert share == sorted(share, key=every.index)
