"""The guest loads of the migration procedure (images/guest/tbload.c): what the user asks
for (``--load NAME[:ARGS][@CPU]``), the command typed in the guest, and what the loads
print on the serial console.

Pure stdlib: imported on the host and inside the board containers.

Load syntax, ARGS a prefix of the mode's parameters (the others keep their defaults):

    seed[:PAGES[:BURST[:PERIOD_MS]]]      dirtyram's stride load   (16384, 512, 50)
    hot[:PAGES]                           a loop that never sleeps (256)
    random[:PAGES[:PERIOD_US[:SEED]]]     random pages             (16384, 0, chosen by tbload)
    wide[:PAGES[:PERIOD_MS]]              sequential sweeps        (65536, 0)

``@CPU`` pins the load to that vCPU.  A seed load whose ident is ``dirtyram`` (its default)
runs as ``dirtyram PAGES BURST PERIOD_MS``, as in the seed, and prints dirtyram's own
lines; every other load runs as ``tbload MODE ... --id IDENT`` and prints
``tbload[IDENT]: ...`` lines.  Either way :func:`parse_load_output` keys a load's lines by
its ident, so ``parse_load_output(console)[spec.ident]`` is that load's log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from testbed.errors import UserError

Mode = Literal["seed", "hot", "random", "wide"]
MODES: tuple[Mode, ...] = ("seed", "hot", "random", "wide")
_MODE_NAMES: dict[str, Mode] = {mode: mode for mode in MODES}

PAGE_SIZE = 4096  # the Debian armhf (LPAE) and arm64 guest kernels use 4 KiB pages
FIT_FRACTION = 0.85  # the loads may take this much of the guest's RAM together
DIRTYRAM_IDENT = "dirtyram"  # the ident of dirtyram's own lines

# The magic at the head and tail of every page a load wrote (tbload.c), by mode.
STAMP_MAGICS: dict[Mode, int] = {
    "seed": 0x314D52595452494D,  # "MIRTYRM1", dirtyram's
    "hot": 0x31544F48444C4254,  # "TBLDHOT1"
    "random": 0x31444E52444C4254,  # "TBLDRND1"
    "wide": 0x31444957444C4254,  # "TBLDWID1"
}

# Each mode's ARGS in order: (name, what it is in an error message, default, example).
_PARAMS: dict[Mode, tuple[tuple[str, str, int | None, int], ...]] = {
    "seed": (
        ("pages", "page count", 16384, 16384),
        ("burst", "burst size", 512, 512),
        ("period_ms", "period in ms", 50, 50),
    ),
    "hot": (("pages", "page count", 256, 256),),
    "random": (
        ("pages", "page count", 16384, 16384),
        ("period_us", "period in us", 0, 100),
        ("seed", "random seed", None, 7),
    ),
    "wide": (("pages", "page count", 65536, 65536), ("period_ms", "period in ms", 0, 100)),
}
_NUMBER = re.compile(r"[0-9]+")
_IDENT = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class LoadSpec:
    """One load.  ``period_ms`` is the burst period (seed) or the pause between sweeps
    (wide, 0 for none); ``period_us`` the pause between random writes; ``seed`` the random
    load's seed (None: tbload picks one and prints it)."""

    mode: Mode
    pages: int
    burst: int = 0
    period_ms: int = 0
    period_us: int = 0
    seed: int | None = None
    cpu: int | None = None
    ident: str = ""  # empty: the mode's default (dirtyram for seed, else the mode)

    def __post_init__(self) -> None:
        if not self.ident:
            object.__setattr__(self, "ident", default_ident(self.mode))
        if not _IDENT.fullmatch(self.ident):
            raise ValueError(f"load ident {self.ident!r}: up to 32 of A-Z a-z 0-9 _ . -")

    def __str__(self) -> str:
        """The load in ``--load`` syntax, every parameter spelt out."""
        args = [str(self.pages)]
        if self.mode == "seed":
            args += [str(self.burst), str(self.period_ms)]
        elif self.mode == "random":
            args.append(str(self.period_us))
            if self.seed is not None:
                args.append(str(self.seed))
        elif self.mode == "wide":
            args.append(str(self.period_ms))
        cpu = "" if self.cpu is None else f"@{self.cpu}"
        return f"{self.mode}:{':'.join(args)}{cpu}"

    @property
    def stride(self) -> int:
        """seed: the bursts per pass (every page is rewritten once per stride bursts)."""
        return self.pages // self.burst if self.mode == "seed" else 1

    @property
    def memory_bytes(self) -> int:
        """Guest memory the load locks: its pages, and the random load's shadow array."""
        shadow = 8 * self.pages if self.mode == "random" else 0
        return self.pages * PAGE_SIZE + shadow

    def guest_command(self) -> str:
        """The shell command typed in the guest (without the trailing ``&``)."""
        cpu = [] if self.cpu is None else ["--cpu", str(self.cpu)]
        if self.mode == "seed" and self.ident == DIRTYRAM_IDENT:
            words = ["dirtyram", str(self.pages), str(self.burst), str(self.period_ms), *cpu]
            return " ".join(words)
        words = ["tbload", self.mode, str(self.pages)]
        if self.mode == "seed":
            words += [str(self.burst), str(self.period_ms)]
        elif self.mode == "random":
            words += ["--period-us", str(self.period_us)] if self.period_us else []
            words += [] if self.seed is None else ["--seed", str(self.seed)]
        elif self.mode == "wide" and self.period_ms:
            words += ["--period-ms", str(self.period_ms)]
        return " ".join([*words, "--id", self.ident, *cpu])


def default_ident(mode: Mode) -> str:
    """The ident a load has unless told otherwise: its lines are keyed by it."""
    return DIRTYRAM_IDENT if mode == "seed" else mode


def parse_load(text: str) -> LoadSpec:
    """A load from ``NAME[:ARGS][@CPU]``; UserError (one line) for anything else."""
    text = text.strip()

    def bad(problem: str, fix: str) -> UserError:
        return UserError(f"--load {text}: {problem}", fix)

    body, at, cpu_text = text.partition("@")
    name, _, args_text = body.partition(":")
    mode = _MODE_NAMES.get(name)
    if mode is None:
        problem = f"'{name}' is not a load" if name else "the load has no name"
        raise bad(problem, f"use one of {', '.join(MODES)}, e.g. hot:256@1")
    params = _PARAMS[mode]
    args = args_text.split(":") if ":" in body else []
    if len(args) > len(params):
        usage = ":".join([mode, *(key.upper() for key, *_ in params)])
        plural = "s" if len(params) > 1 else ""
        raise bad(f"{mode} takes at most {len(params)} argument{plural}", f"use {usage}")
    values: dict[str, int | None] = {key: default for key, _, default, _ in params}
    for n, arg in enumerate(args):
        key, what, _, _ = params[n]
        if not _NUMBER.fullmatch(arg):
            example = ":".join([mode, *(str(p[3]) for p in params[: n + 1])])
            raise bad(f"'{arg}' is not a {what}", f"use e.g. {example}")
        values[key] = int(arg)
    cpu: int | None = None
    if at:
        if not _NUMBER.fullmatch(cpu_text):
            raise bad(f"'{cpu_text}' is not a CPU number", f"use e.g. {mode}@1")
        cpu = int(cpu_text)

    pages = values["pages"]
    assert pages is not None
    if pages == 0:
        raise bad("a load needs at least one page", f"use e.g. {mode}:{params[0][3]}")
    spec = LoadSpec(mode=mode, pages=pages, cpu=cpu)
    if mode == "seed":
        burst, period = values["burst"] or 0, values["period_ms"] or 0
        if not 0 < burst <= pages:
            raise bad(f"the burst must be 1 to {pages} pages", "use e.g. seed:16384:512:50")
        if period == 0:
            raise bad("the seed load needs a period", "use hot for a load that never sleeps")
        return replace(spec, burst=burst, period_ms=period)
    if mode == "random":
        return replace(spec, period_us=values["period_us"] or 0, seed=values["seed"])
    if mode == "wide":
        return replace(spec, period_ms=values["period_ms"] or 0)
    return spec


def ensure_unique_idents(loads: list[LoadSpec]) -> list[LoadSpec]:
    """The loads with distinct idents: a repeated ident gets -2, -3, ... appended."""
    taken = {spec.ident for spec in loads}
    seen: set[str] = set()
    out = []
    for spec in loads:
        ident = spec.ident
        if ident in seen:
            n = 2
            while f"{spec.ident}-{n}" in taken:
                n += 1
            ident = f"{spec.ident}-{n}"
            taken.add(ident)
        seen.add(ident)
        out.append(replace(spec, ident=ident))
    return out


def check_fits(loads: list[LoadSpec], mem_mb: int) -> None:
    """UserError when the loads together need more than 85% of the guest's RAM."""
    need = sum(spec.memory_bytes for spec in loads)
    allowed = FIT_FRACTION * mem_mb * 2**20
    if need > allowed:
        names = " ".join(str(spec) for spec in loads)
        raise UserError(
            f"--load {names}: the loads need {need / 2**20:.0f} MiB, more than "
            f"{FIT_FRACTION:.0%} of the guest's {mem_mb} MiB",
            "use fewer pages or a larger --mem",
        )


def check_cpus(loads: list[LoadSpec], smp: int) -> None:
    """UserError when a load is pinned to a vCPU the guest does not have."""
    for spec in loads:
        if spec.cpu is not None and spec.cpu >= smp:
            raise UserError(
                f"--load {spec}: the guest has no CPU {spec.cpu} (-smp {smp})",
                f"use @0 to @{smp - 1}, or a larger --smp",
            )


def pass_seconds(spec: LoadSpec) -> float | None:
    """Seconds a pass takes, where the load's schedule says (seed); None otherwise."""
    if spec.mode == "seed":
        return spec.stride * spec.period_ms / 1000
    return None


# --- console output -------------------------------------------------------------------

_COUNTERS = (
    r"written=(?P<written>\d+) checked=(?P<checked>\d+) stale=(?P<stale>\d+) "
    r"passes=(?P<passes>\d+) overruns=(?P<overruns>\d+)"
)
# A line must end where a status line ends: a line cut short by another one is skipped.
_LINE = re.compile(
    r"(?:tbload\[(?P<ident>[A-Za-z0-9_.-]{1,32})\]: (?P<summary>summary )?mode=(?P<mode>[a-z]+)"
    r"|dirtyram: (?P<dsummary>summary )?bursts=\d+) "
    + _COUNTERS
    + r"(?: stale_pages=(?P<pages>\d+(?:,\d+)*(?:,\+\d+)?|\+\d+))?"
    r"(?: result=(?P<result>PASS|FAIL))?\s*$"
)
_START = re.compile(
    r"(?:tbload\[(?P<ident>[A-Za-z0-9_.-]{1,32})\]: start mode=(?P<mode>[a-z]+)"
    r"|dirtyram: start) pages=\d+ .*region=0x[0-9a-f]+\s*$"
)


@dataclass(frozen=True)
class LoadStatus:
    """One status line (``result`` None) or the summary (``result`` PASS or FAIL)."""

    written: int
    checked: int
    stale: int
    passes: int
    overruns: int
    stale_pages: tuple[str, ...] = ()
    result: str | None = None


@dataclass
class LoadLog:
    """What one load printed: its start lines, status lines and summary."""

    ident: str
    mode: str | None = None
    starts: int = 0  # start lines seen: more than one means the counters began again
    statuses: list[LoadStatus] = field(default_factory=list)
    summary: LoadStatus | None = None

    @property
    def last(self) -> LoadStatus | None:
        return self.summary or (self.statuses[-1] if self.statuses else None)

    @property
    def stale_pages(self) -> list[str]:
        """The pages reported stale, in order (``+K`` entries count unlisted ones)."""
        return [p for s in self.statuses for p in s.stale_pages]


def parse_load_output(text: str) -> dict[str, LoadLog]:
    """Every load's log in console text, keyed by ident (dirtyram's lines by
    ``"dirtyram"``).  Lines that do not parse whole (kernel messages, other programs, a
    status line split by another one) are skipped."""
    logs: dict[str, LoadLog] = {}

    def log_of(ident: str | None) -> LoadLog:
        key = ident or DIRTYRAM_IDENT
        return logs.setdefault(key, LoadLog(key))

    for line in text.splitlines():
        if m := _START.search(line):
            log = log_of(m["ident"])
            log.mode = m["mode"] or "seed"
            log.starts += 1
        elif m := _LINE.search(line):
            summary = bool(m["summary"] or m["dsummary"])
            if summary != bool(m["result"]):
                continue  # a summary without its result, or a status line with one
            log = log_of(m["ident"])
            log.mode = log.mode or m["mode"] or "seed"
            pages = tuple(m["pages"].split(",")) if m["pages"] else ()
            status = LoadStatus(
                written=int(m["written"]),
                checked=int(m["checked"]),
                stale=int(m["stale"]),
                passes=int(m["passes"]),
                overruns=int(m["overruns"]),
                stale_pages=pages,
                result=m["result"],
            )
            if summary:
                log.summary = status
            else:
                log.statuses.append(status)
    return logs
