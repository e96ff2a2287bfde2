"""The cells of a matrix (a cartesian product, in a stable order) and how the (cell, run)
pairs are shared out over N machines (``--shard I/N``).

Every value a user gives is checked here, before anything runs: a bad one is one
:class:`~testbed.errors.UserError` line."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from testbed.arch import ARCHES
from testbed.errors import UserError
from testbed.matrix.records import SCENARIOS, SUITE_QEMU, Cell, load_modes

ACCELS = ("tcg", "kvm", "auto")
MAX_SMP = 8
# The modes a load text may combine; the scenarios define what each one does.
LOAD_MODES = {"migration": ("seed", "hot", "random", "wide"), "shmem": ("dirty", "remap")}
_LOAD = re.compile(r"^[a-z]+(:[0-9]+)*(@[0-9]+)?$")
_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(bit|kbit|mbit|gbit)$")
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_SHARD = re.compile(r"^\s*(-?[0-9]+)\s*/\s*(-?[0-9]+)\s*$")

Pair = tuple[Cell, int]
T_ = TypeVar("T_")


def expand(
    suites: Sequence[str],
    arches: Sequence[str],
    smps: Sequence[int],
    loads: Sequence[str],
    accels: Sequence[str],
    scenario: str,
    hold_s: float = 0.0,
    bandwidth: str | None = None,
) -> list[Cell]:
    """Every combination, suites outermost and accels innermost, each value in the order
    given (repeats dropped)."""
    check_scenario(scenario)
    for suite in suites:
        check_suite(suite)
    for arch in arches:
        check_arch(arch)
    for smp in smps:
        check_smp(smp)
    for load in loads:
        check_load(scenario, load)
    for accel in accels:
        check_accel(accel)
    check_hold(hold_s)
    check_bandwidth(bandwidth)
    for name, axis in (
        ("--suite", suites),
        ("--arch", arches),
        ("--smp", smps),
        ("--load", loads),
        ("--accel", accels),
    ):
        if not axis:
            raise UserError(f"{name}: no value given", "give at least one")
    product = itertools.product(
        _unique(suites), _unique(arches), _unique(smps), _unique(loads), _unique(accels)
    )
    return [
        Cell(
            scenario=scenario,
            suite=suite,
            arch=arch,
            smp=smp,
            load=load,
            accel=accel,
            hold_s=float(hold_s),
            bandwidth=bandwidth,
        )
        for suite, arch, smp, load, accel in product
    ]


def pairs(cells: Sequence[Cell], runs: int) -> list[Pair]:
    """Run 1 of every cell, then run 2 of every cell, ...: a matrix stopped half way has
    looked at every cell."""
    check_runs(runs)
    return [(cell, run) for run in range(1, runs + 1) for cell in cells]


@dataclass(frozen=True)
class Shard:
    """Machine ``index`` of ``count`` (1-based)."""

    index: int = 1
    count: int = 1

    def select(self, cells_with_runs: Sequence[Pair]) -> list[Pair]:
        """Round robin: pair k belongs to shard (k mod count) + 1, so every pair belongs to
        exactly one shard and shards differ by at most one pair."""
        return [p for k, p in enumerate(cells_with_runs) if k % self.count == self.index - 1]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``2/5`` -> Shard(2, 5)."""
    match = _SHARD.match(text)
    fix = "use I/N with 1 <= I <= N"
    if match is None:
        raise UserError(f"--shard {text}: not of the form I/N", fix)
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise UserError(f"--shard {text}: N must be at least 1", fix)
    if not 1 <= index <= count:
        raise UserError(f"--shard {text}: index must be 1 to {count}", fix)
    return Shard(index, count)


def check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise UserError(f"--scenario {scenario}: unknown scenario", f"use {' or '.join(SCENARIOS)}")


def check_suite(suite: str) -> None:
    if suite not in SUITE_QEMU:
        raise UserError(f"--suite {suite}: unknown QEMU suite", f"use {_one_of(SUITE_QEMU)}")


def check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise UserError(f"--arch {arch}: unknown guest architecture", f"use {_one_of(ARCHES)}")


def check_smp(smp: int) -> None:
    if not 1 <= smp <= MAX_SMP:
        raise UserError(f"--smp {smp} is out of range", f"use 1 to {MAX_SMP}")


def check_runs(runs: int) -> None:
    if runs < 1:
        raise UserError(f"--runs {runs} is out of range", "use 1 or more")


def check_accel(accel: str) -> None:
    if accel not in ACCELS:
        raise UserError(f"--accel {accel}: unknown accelerator", f"use {_one_of(ACCELS)}")


def check_hold(hold_s: float) -> None:
    if not hold_s >= 0:  # also NaN
        raise UserError(f"--hold {hold_s} is out of range", "use 0 (no hold) or more seconds")


def check_bandwidth(bandwidth: str | None) -> None:
    if bandwidth is None:
        return
    if link_bps(bandwidth) is None:
        raise UserError(
            f"--bandwidth {bandwidth}: not a rate",
            "use a number with kbit, mbit or gbit, e.g. 1gbit",
        )


def link_bps(bandwidth: str | None) -> int | None:
    """``100mbit`` -> 100000000 bits/s, as tc spells rates; None for None or a bad rate."""
    match = _RATE.match((bandwidth or "").strip().lower())
    if match is None or float(match.group(1)) <= 0:
        return None
    return int(float(match.group(1)) * _RATE_UNITS[match.group(2)])


def check_load(scenario: str, load: str) -> None:
    modes = LOAD_MODES[scenario]
    parts = load.split("+")
    if not load or not all(_LOAD.match(part) for part in parts):
        raise UserError(
            f"--load {load!r}: not a load text",
            "use MODE[:N...][@CPU] joined by +, e.g. hot:256 or seed+hot:256@1",
        )
    for mode in load_modes(load):
        if mode not in modes:
            raise UserError(
                f"--load {load}: {mode!r} is not a {scenario} load", f"use {_one_of(modes)}"
            )


def _one_of(values: Iterable[str]) -> str:
    return f"one of {', '.join(values)}"


def _unique(values: Sequence[T_]) -> list[T_]:
    seen: list[T_] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
