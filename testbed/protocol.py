"""The node agent's protocol: the messages host and node exchange, as dataclasses that both
sides import (standard library only: this module runs inside the containers too).

Transport: JSON lines over the agent's unix socket, which the host reaches through one
``docker exec -i NODE python3 -m testbed.node attach`` stream per node.

    host -> node   {"id": 7, "op": "vm.start", "args": {...}}
    node -> host   {"id": 7, "event": {...}}                   zero or more, for progress
    node -> host   {"id": 7, "ok": true, "result": {...}}
                   {"id": 7, "ok": false, "error": {"kind": ..., "message": ..., ...}}

The first request of a connection is :class:`Hello`; the host refuses an agent whose
protocol version or code digest differs from its own (the board image holds a copy of the
node code taken at ``testbed images build``).  Every request class names its operation
(``OP``) and its result class (``RESULT``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from testbed.codec import Json

PROTOCOL_VERSION = 1
AGENT_SOCKET = "/run/testbed/agent.sock"
VM_ROOT = "/run/testbed/vm"

# The modules that run inside the nodes: their digest tells a stale board image apart.
NODE_CODE = (
    "__init__.py",
    "arch.py",
    "codec.py",
    "config.py",
    "errors.py",
    "loads.py",
    "protocol.py",
    "rates.py",
    "wait.py",
)
NODE_PACKAGES = ("node",)

R = TypeVar("R", covariant=True)  # a Request[HelloReply] is a Request[object]


def code_digest(package_dir: Path | None = None) -> str:
    """A digest of the node-side code of the testbed package found at ``package_dir``
    (default: this one).  Host and node compute it over their own copies."""
    root = package_dir or Path(__file__).resolve().parent
    files = [root / name for name in NODE_CODE]
    for package in NODE_PACKAGES:
        files += sorted((root / package).rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        if not path.is_file():
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class Request(Generic[R]):
    """Base of every request; subclasses are frozen dataclasses."""

    OP: ClassVar[str]
    RESULT: ClassVar[type]


@dataclass(frozen=True)
class Done:
    """The result of a request that returns nothing but its success."""

    ok: bool = True


@dataclass(frozen=True)
class ErrorInfo:
    """Why a request failed.  ``kind``: user (a problem the user can fix), vm-launch
    (QEMU did not start; ``details`` has the command line and its output), vm-gone (the
    VM is not running), timeout, qmp (QEMU refused a command), internal (a bug)."""

    kind: str
    message: str
    details: str = ""


# -- session ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HelloReply:
    protocol: int
    code: str
    node: str
    agent_pid: int
    agent_started: float
    vms: list[str]


@dataclass(frozen=True)
class Hello(Request[HelloReply]):
    OP: ClassVar[str] = "hello"
    RESULT: ClassVar[type] = HelloReply
    protocol: int
    code: str
    client: str


@dataclass(frozen=True)
class Release(Request[Done]):
    """Keep this VM (or helper) running when the session ends (``--keep``, ``guest start``)."""

    OP: ClassVar[str] = "session.release"
    RESULT: ClassVar[type] = Done
    vm: str | None = None
    helper: str | None = None


@dataclass(frozen=True)
class SessionEnd:
    stopped_vms: list[str]
    stopped_helpers: list[str]


@dataclass(frozen=True)
class Goodbye(Request[SessionEnd]):
    """End the session: the agent stops every VM and helper the session started and did
    not release.  A session whose connection breaks ends the same way."""

    OP: ClassVar[str] = "session.end"
    RESULT: ClassVar[type] = SessionEnd


# -- processes and files ---------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    code: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Run(Request[RunResult]):
    OP: ClassVar[str] = "proc.run"
    RESULT: ClassVar[type] = RunResult
    argv: list[str]
    timeout: float = 60.0


@dataclass(frozen=True)
class FileText:
    exists: bool
    text: str
    size: int


@dataclass(frozen=True)
class ReadFile(Request[FileText]):
    OP: ClassVar[str] = "file.read"
    RESULT: ClassVar[type] = FileText
    path: str
    offset: int = 0
    limit: int = 16 << 20


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    command: str


@dataclass(frozen=True)
class ProcessList:
    processes: list[ProcessInfo]


@dataclass(frozen=True)
class ListProcesses(Request[ProcessList]):
    """The node's processes other than the agent and its relays (for leak checks)."""

    OP: ClassVar[str] = "proc.list"
    RESULT: ClassVar[type] = ProcessList


# -- network -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TapSpec:
    name: str
    address: str  # CIDR
    mac: str


@dataclass(frozen=True)
class RouteSpec:
    dst: str  # "default" or a prefix
    gateway: str


@dataclass(frozen=True)
class NetConfig:
    """What one node's network must look like (made by the host from the topology)."""

    taps: list[TapSpec] = field(default_factory=list)
    routes: list[RouteSpec] = field(default_factory=list)
    lab_device: str = "eth0"


@dataclass(frozen=True)
class NetApplied:
    actions: list[str]
    shaping: str | None
    forwarding: bool


@dataclass(frozen=True)
class NetApply(Request[NetApplied]):
    OP: ClassVar[str] = "net.apply"
    RESULT: ClassVar[type] = NetApplied
    config: NetConfig
    shape: bool = False
    bandwidth: str | None = None


@dataclass(frozen=True)
class RouteEntry:
    dst: str
    gateway: str | None
    dev: str | None


@dataclass(frozen=True)
class RouteTable:
    routes: list[RouteEntry]
    forwarding: bool


@dataclass(frozen=True)
class GetRoutes(Request[RouteTable]):
    OP: ClassVar[str] = "net.routes"
    RESULT: ClassVar[type] = RouteTable


@dataclass(frozen=True)
class RouteLookup:
    dst: str
    gateway: str | None = None
    dev: str | None = None
    prefsrc: str | None = None
    type: str | None = None
    error: str | None = None
    forwarding: bool = False


@dataclass(frozen=True)
class RouteGet(Request[RouteLookup]):
    OP: ClassVar[str] = "net.route-get"
    RESULT: ClassVar[type] = RouteLookup
    dst: str


@dataclass(frozen=True)
class RouteSwitched:
    """``ip route replace`` done at ``switched_at`` (epoch seconds, the node's clock,
    which containers share with the host); with a probe, the first echo reply."""

    dst: str
    via: str
    kernel_ms: float
    switched_at: float
    first_reply_at: float | None = None
    echoes_sent: int = 0


@dataclass(frozen=True)
class RouteReplace(Request[RouteSwitched]):
    OP: ClassVar[str] = "net.route-replace"
    RESULT: ClassVar[type] = RouteSwitched
    dst: str
    via: str
    probe: str | None = None  # after the switch, send echo requests here until one answers
    probe_timeout: float = 10.0
    probe_interval_ms: float = 5.0


@dataclass(frozen=True)
class RouteDelete(Request[Done]):
    OP: ClassVar[str] = "net.route-delete"
    RESULT: ClassVar[type] = Done
    dst: str


@dataclass(frozen=True)
class ProbeResult:
    address: str
    sent: int
    replies: int
    first_reply_at: float | None
    started_at: float
    seconds: float


@dataclass(frozen=True)
class Probe(Request[ProbeResult]):
    """ICMP echo requests every ``interval_ms`` for ``seconds`` (or until the first reply
    with ``until_reply``)."""

    OP: ClassVar[str] = "net.probe"
    RESULT: ClassVar[type] = ProbeResult
    address: str
    seconds: float = 1.0
    interval_ms: float = 5.0
    until_reply: bool = False


# -- virtual machines ------------------------------------------------------------------------
@dataclass(frozen=True)
class VmSpec:
    """One guest on a board, as the seed runs it."""

    arch: str
    name: str = "guest"
    accel: str = "auto"
    mem_mb: int = 512
    smp: int = 1
    disk: str | None = None  # nfs://... or a path
    tap: str | None = None
    mac: str | None = None
    guest_ip: str | None = None
    guest_gateway: str | None = None
    incoming: str | None = None  # e.g. tcp:0:4321
    paused: bool = False  # -S
    gdb_port: int | None = None
    shm_path: str | None = None
    shm_size: str = "1M"
    shm_first: bool = False


@dataclass(frozen=True)
class VmInfo:
    name: str
    pid: int
    arch: str
    accel: str
    qemu_version: str
    qemu_package: str
    command: list[str]
    started_at: float
    status: str  # QMP query-status, or "exited"
    alive: bool
    exit_code: int | None
    spec: VmSpec


@dataclass(frozen=True)
class VmStart(Request[VmInfo]):
    OP: ClassVar[str] = "vm.start"
    RESULT: ClassVar[type] = VmInfo
    spec: VmSpec
    timeout: float = 30.0


@dataclass(frozen=True)
class VmList:
    vms: list[VmInfo]


@dataclass(frozen=True)
class ListVms(Request[VmList]):
    OP: ClassVar[str] = "vm.list"
    RESULT: ClassVar[type] = VmList


@dataclass(frozen=True)
class VmStopped:
    name: str
    how: str  # quit | SIGTERM | SIGKILL | already exited | no such VM
    exit_code: int | None
    log_tail: str


@dataclass(frozen=True)
class VmStop(Request[VmStopped]):
    OP: ClassVar[str] = "vm.stop"
    RESULT: ClassVar[type] = VmStopped
    name: str = "guest"
    timeout: float = 10.0


@dataclass(frozen=True)
class GuestReady:
    seconds: float
    arch: str
    kernel: str
    root: str
    net: str


@dataclass(frozen=True)
class VmWaitReady(Request[GuestReady]):
    OP: ClassVar[str] = "vm.wait-ready"
    RESULT: ClassVar[type] = GuestReady
    name: str = "guest"
    timeout: float = 120.0


@dataclass(frozen=True)
class QmpEvent:
    """A QMP event with QEMU's own timestamp (epoch seconds)."""

    seq: int
    event: str
    at: float
    data: dict[str, Json]


@dataclass(frozen=True)
class EventList:
    events: list[QmpEvent]


@dataclass(frozen=True)
class VmEvents(Request[EventList]):
    """The VM's QMP events after sequence number ``after`` (the agent records them all)."""

    OP: ClassVar[str] = "vm.events"
    RESULT: ClassVar[type] = EventList
    name: str = "guest"
    after: int = 0
    names: list[str] = field(default_factory=list)  # empty: all


@dataclass(frozen=True)
class RunState:
    status: str
    at: float | None = None  # the STOP/RESUME event's timestamp, when the state changed


@dataclass(frozen=True)
class VmStatus(Request[RunState]):
    OP: ClassVar[str] = "vm.status"
    RESULT: ClassVar[type] = RunState
    name: str = "guest"


@dataclass(frozen=True)
class VmCont(Request[RunState]):
    """``cont``; the result carries the RESUME event's timestamp."""

    OP: ClassVar[str] = "vm.cont"
    RESULT: ClassVar[type] = RunState
    name: str = "guest"


@dataclass(frozen=True)
class VmPause(Request[RunState]):
    OP: ClassVar[str] = "vm.pause"
    RESULT: ClassVar[type] = RunState
    name: str = "guest"


@dataclass(frozen=True)
class VmWaitStatus(Request[RunState]):
    OP: ClassVar[str] = "vm.wait-status"
    RESULT: ClassVar[type] = RunState
    name: str = "guest"
    wanted: list[str] = field(default_factory=lambda: ["paused"])
    timeout: float = 30.0


@dataclass(frozen=True)
class HmpOutput:
    text: str


@dataclass(frozen=True)
class VmHmp(Request[HmpOutput]):
    OP: ClassVar[str] = "vm.hmp"
    RESULT: ClassVar[type] = HmpOutput
    command_line: str
    name: str = "guest"


@dataclass(frozen=True)
class ConsoleText:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class ConsoleRead(Request[ConsoleText]):
    """The guest's serial output from byte ``offset`` of its log (QEMU keeps it all)."""

    OP: ClassVar[str] = "console.read"
    RESULT: ClassVar[type] = ConsoleText
    name: str = "guest"
    offset: int = 0


@dataclass(frozen=True)
class ConsoleSend(Request[Done]):
    OP: ClassVar[str] = "console.send"
    RESULT: ClassVar[type] = Done
    text: str
    name: str = "guest"


@dataclass(frozen=True)
class CommandOutput:
    output: str
    status: int


@dataclass(frozen=True)
class ConsoleRun(Request[CommandOutput]):
    """A shell command typed on the guest's console: its output and exit status."""

    OP: ClassVar[str] = "console.run"
    RESULT: ClassVar[type] = CommandOutput
    command: str
    name: str = "guest"
    timeout: float = 60.0


@dataclass(frozen=True)
class ConsoleWaitFor(Request[ConsoleText]):
    """Wait until the console output after ``offset`` matches ``pattern`` (a regex)."""

    OP: ClassVar[str] = "console.wait-for"
    RESULT: ClassVar[type] = ConsoleText
    pattern: str
    name: str = "guest"
    offset: int = 0
    timeout: float = 60.0


@dataclass(frozen=True)
class WaitLoadPasses(Request[ConsoleText]):
    """Wait until every load ident in ``targets`` reports at least that many passes in the
    console output after ``offset``; returns that output."""

    OP: ClassVar[str] = "console.wait-passes"
    RESULT: ClassVar[type] = ConsoleText
    targets: dict[str, int]
    name: str = "guest"
    offset: int = 0
    timeout: float = 120.0


# -- guest memory ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RamDigest:
    """Guest RAM dumped (``dump-guest-memory``) and digested per MiB: SHA-256 prefixes, 8
    bytes per MiB block, base64.  The dump stays in the agent for :class:`RamPageDigest`
    and :class:`RamPeek` until :class:`RamDrop`."""

    pages: int
    block_sha256: str
    status: str
    seconds: float


@dataclass(frozen=True)
class PageDigests:
    """Per block asked for, the CRC-32 of each of its pages (little-endian u32s, base64)."""

    crc32: dict[str, str]


@dataclass(frozen=True)
class RamPageDigest(Request[PageDigests]):
    """Page CRC-32s of the kept dump, for the MiB blocks whose digests differed."""

    OP: ClassVar[str] = "ram.page-digest"
    RESULT: ClassVar[type] = PageDigests
    blocks: list[int]
    name: str = "guest"


@dataclass(frozen=True)
class RamDump(Request[RamDigest]):
    OP: ClassVar[str] = "ram.dump"
    RESULT: ClassVar[type] = RamDigest
    name: str = "guest"


@dataclass(frozen=True)
class PageHeads:
    heads: dict[str, str]  # page number -> hex of its first bytes


@dataclass(frozen=True)
class RamPeek(Request[PageHeads]):
    OP: ClassVar[str] = "ram.peek"
    RESULT: ClassVar[type] = PageHeads
    pages: list[int]
    name: str = "guest"
    length: int = 32


@dataclass(frozen=True)
class PageList:
    pages: list[int]


@dataclass(frozen=True)
class RamFind(Request[PageList]):
    """Pages of the kept dump whose first bytes are ``head_hex`` (e.g. a load's magic)."""

    OP: ClassVar[str] = "ram.find"
    RESULT: ClassVar[type] = PageList
    head_hex: str
    name: str = "guest"
    limit: int = 16


@dataclass(frozen=True)
class RamDrop(Request[Done]):
    OP: ClassVar[str] = "ram.drop"
    RESULT: ClassVar[type] = Done
    name: str = "guest"


@dataclass(frozen=True)
class Poked:
    page: int
    address: str
    length: int
    status_before: str
    status_after: str


@dataclass(frozen=True)
class RamPoke(Request[Poked]):
    """Write ``data_hex`` at the start of guest page ``page`` (counted from RAM's base)
    through QEMU's gdbstub: the negative controls alter a paused guest's memory."""

    OP: ClassVar[str] = "ram.poke"
    RESULT: ClassVar[type] = Poked
    page: int
    data_hex: str
    name: str = "guest"


# -- migration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class MigrationSettings:
    max_bandwidth: int  # bytes/s
    downtime_limit_ms: int = 300
    hold_seconds: float = 0.0  # keep iterating this long first (downtime-limit 1 ms)
    hold_bandwidth: int = 100 << 20  # max-bandwidth while holding, bytes/s
    stall_timeout: float = 15.0  # no progress this long: cancel
    timeout: float = 600.0
    sample_interval: float = 0.1  # query-migrate for progress figures


@dataclass(frozen=True)
class MigrationSample:
    """One query-migrate reading (progress figures; the timing comes from events)."""

    at: float
    status: str
    transferred: int
    remaining: int
    total: int
    mbps: float
    dirty_pages_rate: int
    dirty_sync_count: int


@dataclass(frozen=True)
class MigrationOutcome:
    status: str  # completed | failed | cancelled
    error: str
    started_at: float
    ended_at: float
    stopped_at: float | None  # the source's STOP event (switchover)
    total_ms: int | None
    downtime_ms: int | None
    setup_ms: int | None
    transferred_bytes: int
    throughput_mbps: float
    dirty_sync_count: int
    dirty_pages_rate: int
    normal_pages: int
    zero_pages: int
    expected_downtime_ms: int | None
    held_seconds: float
    syncs_while_holding: int
    events: list[QmpEvent]
    samples: list[MigrationSample]


@dataclass(frozen=True)
class Migrate(Request[MigrationOutcome]):
    """Migrate VM ``name`` to ``uri``; progress samples stream as events."""

    OP: ClassVar[str] = "vm.migrate"
    RESULT: ClassVar[type] = MigrationOutcome
    uri: str
    settings: MigrationSettings
    name: str = "guest"


@dataclass(frozen=True)
class PrepareIncoming(Request[Done]):
    """On a destination started with -incoming: the same capabilities as the source
    (events on, everything that changes the stream off)."""

    OP: ClassVar[str] = "vm.prepare-incoming"
    RESULT: ClassVar[type] = Done
    name: str = "guest"


# -- helper processes (replication daemon, receiver) ---------------------------------------
@dataclass(frozen=True)
class HelperInfo:
    name: str
    pid: int
    log: str


@dataclass(frozen=True)
class HelperStart(Request[HelperInfo]):
    """Start a helper process owned by the session; ready when its log contains
    ``ready_text`` (if given) or when it listens on ``ready_port`` (if given)."""

    OP: ClassVar[str] = "helper.start"
    RESULT: ClassVar[type] = HelperInfo
    name: str
    argv: list[str]
    ready_text: str | None = None
    ready_port: int | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class HelperExit:
    name: str
    running: bool
    exit_code: int | None
    log_tail: str


@dataclass(frozen=True)
class HelperWait(Request[HelperExit]):
    OP: ClassVar[str] = "helper.wait"
    RESULT: ClassVar[type] = HelperExit
    name: str
    timeout: float = 0.0


@dataclass(frozen=True)
class HelperSignal(Request[HelperExit]):
    """Send ``signal`` (e.g. SIGUSR1, SIGKILL) and wait up to ``timeout`` for the exit."""

    OP: ClassVar[str] = "helper.signal"
    RESULT: ClassVar[type] = HelperExit
    name: str
    signal: str = "SIGTERM"
    timeout: float = 10.0


ALL_REQUESTS: tuple[type[Request[object]], ...] = (
    Hello,
    Release,
    Goodbye,
    Run,
    ReadFile,
    ListProcesses,
    NetApply,
    GetRoutes,
    RouteGet,
    RouteReplace,
    RouteDelete,
    Probe,
    VmStart,
    ListVms,
    VmStop,
    VmWaitReady,
    VmEvents,
    VmStatus,
    VmCont,
    VmPause,
    VmWaitStatus,
    VmHmp,
    ConsoleRead,
    ConsoleSend,
    ConsoleRun,
    ConsoleWaitFor,
    WaitLoadPasses,
    RamDump,
    RamPageDigest,
    RamPeek,
    RamFind,
    RamDrop,
    RamPoke,
    Migrate,
    PrepareIncoming,
    HelperStart,
    HelperWait,
    HelperSignal,
)
REQUESTS: dict[str, type[Request[object]]] = {r.OP: r for r in ALL_REQUESTS}
