"""The node agent: one long-lived process per node that does everything the host asks of
the node (network, VMs, consoles, memory, migrations, helper processes).

It listens on a unix socket (``/run/testbed/agent.sock``); the host reaches it through
``docker exec -i NODE python3 -m testbed.node attach`` (a relay, see ``attach.py``), one
stream per node and host process.  Each connection is a *session*: the VMs and helpers
it starts belong to it and are stopped when it ends, whether it says goodbye or its
stream breaks (the host was interrupted or killed), unless it released them.

Requests of one session run concurrently; each holds QEMU through the machine's single
QMP connection, so several sessions (a scenario, ``testbed guest list``, a person's
``testbed migrate``) can talk to the same VM at once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from qemu.qmp import ExecuteError

from testbed import codec, protocol
from testbed.codec import Json
from testbed.errors import UserError
from testbed.node import helpers as helper_mod
from testbed.node import net, ramdump
from testbed.node.machine import Machine, MachinePaths, VmGone, VMLaunchFailure
from testbed.node.migration import migrate, prepare
from testbed.node.serial import ConsoleClosed, ConsoleTimeout
from testbed.protocol import (
    CommandOutput,
    ConsoleRead,
    ConsoleRun,
    ConsoleSend,
    ConsoleText,
    ConsoleWaitFor,
    Done,
    ErrorInfo,
    EventList,
    FileText,
    GetRoutes,
    Goodbye,
    GuestReady,
    Hello,
    HelloReply,
    HelperExit,
    HelperInfo,
    HelperSignal,
    HelperStart,
    HelperWait,
    HmpOutput,
    ListProcesses,
    ListVms,
    Migrate,
    MigrationOutcome,
    MigrationSample,
    NetApplied,
    NetApply,
    PageDigests,
    PageHeads,
    PageList,
    Poked,
    PrepareIncoming,
    Probe,
    ProbeResult,
    ProcessInfo,
    ProcessList,
    RamDigest,
    RamDrop,
    RamDump,
    RamFind,
    RamPageDigest,
    RamPeek,
    RamPoke,
    ReadFile,
    Release,
    Request,
    RouteDelete,
    RouteGet,
    RouteLookup,
    RouteReplace,
    RouteSwitched,
    RouteTable,
    Run,
    RunResult,
    RunState,
    SessionEnd,
    VmCont,
    VmEvents,
    VmHmp,
    VmInfo,
    VmList,
    VmPause,
    VmStart,
    VmStatus,
    VmStop,
    VmStopped,
    VmWaitReady,
    VmWaitStatus,
    WaitLoadPasses,
)
from testbed.wait import WaitAborted, await_until

LOG = logging.getLogger(__name__)
SESSION_END_WAIT_S = 60.0  # how long a session's abandoned requests (a launch) may take to end

Emit = Callable[[Json], Awaitable[None]]
Q = TypeVar("Q")
Handler = Callable[["Agent", "Session", Q, Emit], Awaitable[object]]
HANDLERS: dict[str, Handler[object]] = {}


def handles(request: type[Q]) -> Callable[[Handler[Q]], Handler[Q]]:
    def register(func: Handler[Q]) -> Handler[Q]:
        HANDLERS[request.OP] = func  # type: ignore[attr-defined,assignment]
        return func

    return register


class Session:
    _ids = 0

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        Session._ids += 1
        self.id = Session._ids
        self.client = "?"
        self.writer = writer
        self.vms: set[str] = set()
        self.launching: dict[str, Machine] = {}  # VMs whose QEMU is starting for this session
        self.launch_tasks: set[asyncio.Task[None]] = set()  # the requests starting them
        self.helpers: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # its requests in flight
        self.write_lock = asyncio.Lock()
        self.ended = False

    async def send(self, message: dict[str, Json]) -> None:
        async with self.write_lock:
            if self.writer.is_closing():
                return
            self.writer.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()


class Agent:
    def __init__(
        self,
        socket_path: str = protocol.AGENT_SOCKET,
        vm_root: str = protocol.VM_ROOT,
        helper_root: Path = helper_mod.HELPER_ROOT,
    ) -> None:
        self.socket_path = socket_path
        self.vm_root = Path(vm_root)
        self.helper_root = helper_root
        self.node = os.uname().nodename
        self.code = protocol.code_digest()
        self.started = time.time()
        self.machines: dict[str, Machine] = {}
        self.digests: dict[str, RamDigest] = {}  # the last ram.dump of each VM
        self.dumps: dict[str, ramdump.KeptDump] = {}  # RAM kept in a file, for page reads
        self.keeping = asyncio.Lock()
        self.helpers: dict[str, helper_mod.Helper] = {}
        self.sessions: set[Session] = set()

    # -- serving -----------------------------------------------------------------------------
    async def serve(self) -> None:
        await self._adopt()
        Path(self.socket_path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        server = await asyncio.start_unix_server(self._connection, self.socket_path, limit=1 << 24)
        LOG.info("agent %s (code %s) listening on %s", self.node, self.code, self.socket_path)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()
        LOG.info("agent stopping: ending %d session(s)", len(self.sessions))
        for session in list(self.sessions):
            await self.end_session(session)

    async def _adopt(self) -> None:
        """VMs an earlier agent started (it crashed or was restarted) are taken over."""
        if not self.vm_root.is_dir():
            return
        for directory in sorted(self.vm_root.iterdir()):
            if (directory / "state.json").exists():
                machine = await Machine.adopt(MachinePaths(directory))
                if machine is not None:
                    self.machines[machine.name] = machine

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer)
        self.sessions.add(session)
        try:
            while line := await reader.readline():
                task = asyncio.create_task(self._request(session, line))
                session.tasks.add(task)
                task.add_done_callback(session.tasks.discard)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            LOG.info("session %d: connection lost: %s", session.id, exc)
        finally:
            if not session.ended:
                LOG.info("session %d (%s) ended without goodbye", session.id, session.client)
                await self.end_session(session)
            for task in list(session.tasks):
                task.cancel()
            writer.close()

    async def _request(self, session: Session, line: bytes) -> None:
        request_id: Json = None
        try:
            message = json.loads(line)
            request_id = message.get("id")
            op = str(message["op"])
            request_type = protocol.REQUESTS.get(op)
            if request_type is None:
                raise UserError(f"unknown operation {op!r}", "update the board image")
            request = codec.from_json(request_type, message.get("args", {}))

            async def emit(event: Json) -> None:
                await session.send({"id": request_id, "event": event})

            result = await HANDLERS[op](self, session, request, emit)
            await session.send({"id": request_id, "ok": True, "result": codec.to_json(result)})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure goes back to the host as a typed error
            info = _error_info(exc)
            if info.kind == "internal":
                LOG.error("request %s failed:\n%s", request_id, traceback.format_exc())
            await session.send({"id": request_id, "ok": False, "error": codec.to_json(info)})

    async def end_session(self, session: Session) -> SessionEnd:
        """Stop what the session started and did not release."""
        session.ended = True
        self.sessions.discard(session)
        # requests still in flight are abandoned: a VM being launched is let finish its
        # launch (cancelling it could orphan a QEMU just spawned) and is then stopped by its
        # own request, which sees the session ended; every other request is cancelled
        launching = list(session.launching.values())
        others = [t for t in session.tasks if t is not asyncio.current_task()]
        for task in others:
            if task not in session.launch_tasks:
                task.cancel()
        if others:
            await asyncio.wait(others, timeout=SESSION_END_WAIT_S)
        started = [m.name for m in launching if m.pid is not None]
        for launched in launching:
            if launched.alive:
                await launched.shutdown()
        stopped_helpers = []
        for name in sorted(session.helpers):
            helper = self.helpers.pop(name, None)
            if helper is not None and helper.running:
                await helper.stop()
                stopped_helpers.append(name)
        stopped_vms = started
        for name in sorted(session.vms):
            machine = self.machines.pop(name, None)
            self.drop_dump(name)
            if machine is not None:
                if machine.alive:
                    stopped_vms.append(name)
                await machine.shutdown()
        if stopped_vms or stopped_helpers:
            LOG.info(
                "session %d ended: stopped VMs %s, helpers %s",
                session.id,
                stopped_vms,
                stopped_helpers,
            )
        return SessionEnd(stopped_vms, stopped_helpers)

    def drop_dump(self, name: str) -> None:
        self.digests.pop(name, None)
        kept = self.dumps.pop(name, None)
        if kept is not None:
            kept.close()

    # -- lookups ---------------------------------------------------------------------------
    def machine(self, name: str, alive: bool = True) -> Machine:
        machine = self.machines.get(name)
        if machine is None:
            raise VmGone(f"no VM {name!r} runs on {self.node}")
        if alive:
            machine.require_alive()
        return machine

    def helper(self, name: str) -> helper_mod.Helper:
        helper = self.helpers.get(name)
        if helper is None:
            raise UserError(f"no helper {name!r} on {self.node}")
        return helper

    async def vm_info(self, machine: Machine) -> VmInfo:
        status = "exited"
        if machine.alive:
            with contextlib.suppress(Exception):
                status = await asyncio.wait_for(machine.status(), 5)
        return VmInfo(
            name=machine.name,
            pid=machine.pid or 0,
            arch=machine.spec.arch,
            accel=machine.config.accel,
            qemu_version=machine.qemu_version,
            qemu_package=machine.qemu_package,
            command=machine.command,
            started_at=machine.started_at,
            status=status,
            alive=machine.alive,
            exit_code=machine.exit_code,
            spec=machine.spec,
        )


def _error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, VMLaunchFailure):
        return ErrorInfo("vm-launch", str(exc), exc.details())
    if isinstance(exc, UserError):
        return ErrorInfo("user", str(exc))
    if isinstance(exc, (VmGone, ConsoleClosed)):
        return ErrorInfo("vm-gone", str(exc))
    if isinstance(exc, (ConsoleTimeout, TimeoutError)):
        return ErrorInfo("timeout", str(exc) or "timed out")
    if isinstance(exc, ExecuteError):
        return ErrorInfo("qmp", f"QEMU refused {exc.sent.get('execute')}: {exc.error.error.desc}")
    if isinstance(exc, codec.DecodeError):
        return ErrorInfo("internal", f"bad request: {exc}")
    return ErrorInfo("internal", f"{type(exc).__name__}: {exc}", traceback.format_exc())


# -- session -------------------------------------------------------------------------------------
@handles(Hello)
async def _hello(agent: Agent, session: Session, request: Hello, emit: Emit) -> HelloReply:
    session.client = request.client
    LOG.info(
        "session %d: hello from %s (protocol %d, code %s)",
        session.id,
        request.client,
        request.protocol,
        request.code,
    )
    return HelloReply(
        protocol.PROTOCOL_VERSION,
        agent.code,
        agent.node,
        os.getpid(),
        agent.started,
        sorted(agent.machines),
    )


@handles(Release)
async def _release(agent: Agent, session: Session, request: Release, emit: Emit) -> Done:
    if request.vm:
        session.vms.discard(request.vm)
    if request.helper:
        session.helpers.discard(request.helper)
    return Done()


@handles(Goodbye)
async def _goodbye(agent: Agent, session: Session, request: Goodbye, emit: Emit) -> SessionEnd:
    return await agent.end_session(session)


# -- processes and files ---------------------------------------------------------------------
@handles(Run)
async def _run(agent: Agent, session: Session, request: Run, emit: Emit) -> RunResult:
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *request.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return RunResult(127, "", f"{request.argv[0]}: {exc.strerror}", 0.0)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), request.timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return RunResult(
            -9,
            out.decode(errors="replace"),
            err.decode(errors="replace") + f"\ntimed out after {request.timeout} s",
            round(time.monotonic() - started, 3),
        )
    return RunResult(
        proc.returncode or 0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        round(time.monotonic() - started, 3),
    )


@handles(ReadFile)
async def _read_file(agent: Agent, session: Session, request: ReadFile, emit: Emit) -> FileText:
    path = Path(request.path)
    try:
        with open(path, "rb") as f:
            f.seek(request.offset)
            data = f.read(request.limit)
        return FileText(True, data.decode(errors="replace"), path.stat().st_size)
    except FileNotFoundError:
        return FileText(False, "", 0)


@handles(ListProcesses)
async def _processes(
    agent: Agent, session: Session, request: ListProcesses, emit: Emit
) -> ProcessList:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if raw and state != "Z":
            found.append(ProcessInfo(int(entry.name), raw.replace(b"\0", b" ").decode().strip()))
    return ProcessList(sorted(found, key=lambda p: p.pid))


# -- network -------------------------------------------------------------------------------
@handles(NetApply)
async def _net_apply(agent: Agent, session: Session, request: NetApply, emit: Emit) -> NetApplied:
    def work() -> NetApplied:
        actions = net.apply(request.config)
        shaping = net.shape(request.config.lab_device, request.bandwidth) if request.shape else None
        return NetApplied(actions, shaping, net.forwarding())

    return await asyncio.to_thread(work)


@handles(GetRoutes)
async def _routes(agent: Agent, session: Session, request: GetRoutes, emit: Emit) -> RouteTable:
    return RouteTable(await asyncio.to_thread(net.routes), net.forwarding())


@handles(RouteGet)
async def _route_get(agent: Agent, session: Session, request: RouteGet, emit: Emit) -> RouteLookup:
    return await asyncio.to_thread(net.route_get, request.dst)


@handles(RouteReplace)
async def _route_replace(
    agent: Agent, session: Session, request: RouteReplace, emit: Emit
) -> RouteSwitched:
    def work() -> RouteSwitched:
        kernel = net.replace_route(request.dst, request.via)
        switched_at = time.time() - 0.0  # right after the kernel answered
        if request.probe is None:
            return RouteSwitched(request.dst, request.via, round(kernel * 1000, 3), switched_at)
        result = net.probe(
            request.probe, request.probe_timeout, request.probe_interval_ms, until_reply=True
        )
        return RouteSwitched(
            request.dst,
            request.via,
            round(kernel * 1000, 3),
            switched_at,
            result.first_reply_at,
            result.sent,
        )

    return await asyncio.to_thread(work)


@handles(RouteDelete)
async def _route_delete(agent: Agent, session: Session, request: RouteDelete, emit: Emit) -> Done:
    await asyncio.to_thread(net.delete_route, request.dst)
    return Done()


@handles(Probe)
async def _probe(agent: Agent, session: Session, request: Probe, emit: Emit) -> ProbeResult:
    return await asyncio.to_thread(
        net.probe, request.address, request.seconds, request.interval_ms, request.until_reply
    )


# -- virtual machines ----------------------------------------------------------------------
@handles(VmStart)
async def _vm_start(agent: Agent, session: Session, request: VmStart, emit: Emit) -> VmInfo:
    from testbed.node.vmconfig import guest_config

    spec = request.spec
    existing = agent.machines.get(spec.name)
    if existing is not None and existing.alive:
        raise UserError(
            f"a VM {spec.name!r} already runs on {agent.node} (QEMU pid {existing.pid})",
            f"stop it first: testbed guest stop {agent.node}",
        )
    if existing is not None:
        await existing.shutdown()
    paths = MachinePaths.under(agent.vm_root, spec.name)
    machine = Machine(spec, guest_config(spec, paths), paths)
    session.launching[spec.name] = machine
    me = asyncio.current_task()
    if me is not None:
        session.launch_tasks.add(me)
    try:
        await machine.launch(request.timeout)
    finally:
        session.launching.pop(spec.name, None)
        session.launch_tasks.discard(me)
    if session.ended:  # nobody owns it any more: it must not outlive its session
        await machine.shutdown()
        raise UserError(f"the session ended while VM {spec.name!r} started; it was stopped")
    agent.machines[spec.name] = machine
    session.vms.add(spec.name)
    return await agent.vm_info(machine)


@handles(ListVms)
async def _vm_list(agent: Agent, session: Session, request: ListVms, emit: Emit) -> VmList:
    return VmList([await agent.vm_info(m) for m in agent.machines.values()])


@handles(VmStop)
async def _vm_stop(agent: Agent, session: Session, request: VmStop, emit: Emit) -> VmStopped:
    machine = agent.machines.pop(request.name, None)
    agent.drop_dump(request.name)
    session.vms.discard(request.name)
    if machine is None:
        return VmStopped(request.name, "no such VM", None, "")
    how = await machine.shutdown(request.timeout)
    return VmStopped(request.name, how, machine.exit_code, machine.log_tail())


@handles(VmWaitReady)
async def _vm_ready(agent: Agent, session: Session, request: VmWaitReady, emit: Emit) -> GuestReady:
    from testbed.node.guest import READY_PATTERN

    machine = agent.machine(request.name)
    try:
        match = await machine.console.wait_for(READY_PATTERN, request.timeout)
    except ConsoleTimeout:
        machine.require_alive()
        raise
    return GuestReady(
        round(time.time() - machine.started_at, 3),
        match.group(1),
        match.group(2),
        match.group(3),
        match.group(4),
    )


@handles(VmEvents)
async def _vm_events(agent: Agent, session: Session, request: VmEvents, emit: Emit) -> EventList:
    machine = agent.machine(request.name, alive=False)
    return EventList(machine.events.after(request.after, set(request.names) or None))


async def _run_state(machine: Machine, seq: int, event: str | None) -> RunState:
    status = await machine.status()
    if event is None:
        return RunState(status)
    found = await machine.events.wait(seq, {event}, 5.0)
    return RunState(status, found.at if found else None)


@handles(VmStatus)
async def _vm_status(agent: Agent, session: Session, request: VmStatus, emit: Emit) -> RunState:
    machine = agent.machines.get(request.name)
    if machine is None:
        return RunState("no vm")
    return RunState(await machine.status())


@handles(VmCont)
async def _vm_cont(agent: Agent, session: Session, request: VmCont, emit: Emit) -> RunState:
    machine = agent.machine(request.name)
    seq = machine.events.seq
    await machine.execute("cont")
    return await _run_state(machine, seq, "RESUME")


@handles(VmPause)
async def _vm_pause(agent: Agent, session: Session, request: VmPause, emit: Emit) -> RunState:
    machine = agent.machine(request.name)
    seq = machine.events.seq
    await machine.execute("stop")
    return await _run_state(machine, seq, "STOP")


@handles(VmWaitStatus)
async def _vm_wait_status(
    agent: Agent, session: Session, request: VmWaitStatus, emit: Emit
) -> RunState:
    machine = agent.machine(request.name)
    seen = ["?"]

    async def check() -> RunState | None:
        seen[0] = await machine.status()
        if seen[0] in request.wanted:
            return RunState(seen[0])
        await machine.events.wait(machine.events.seq, {"STOP", "RESUME", "MIGRATION"}, 0.2)
        return None

    return await await_until(
        check,
        what=f"VM {request.name} {' or '.join(request.wanted)}",
        timeout=request.timeout,
        last=lambda: seen[0],
        interval=0.0,
    )


@handles(VmHmp)
async def _vm_hmp(agent: Agent, session: Session, request: VmHmp, emit: Emit) -> HmpOutput:
    return HmpOutput(await agent.machine(request.name).hmp(request.command_line))


# -- consoles ------------------------------------------------------------------------------
def _read_log(machine: Machine, offset: int) -> ConsoleText:
    try:
        with open(machine.paths.serial_log, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        data = b""
    return ConsoleText(data.decode("utf-8", "replace"), offset, offset + len(data))


@handles(ConsoleRead)
async def _console_read(
    agent: Agent, session: Session, request: ConsoleRead, emit: Emit
) -> ConsoleText:
    return _read_log(agent.machine(request.name, alive=False), request.offset)


@handles(ConsoleSend)
async def _console_send(agent: Agent, session: Session, request: ConsoleSend, emit: Emit) -> Done:
    await agent.machine(request.name).console.write(request.text)
    return Done()


@handles(ConsoleRun)
async def _console_run(
    agent: Agent, session: Session, request: ConsoleRun, emit: Emit
) -> CommandOutput:
    machine = agent.machine(request.name)
    try:
        return await machine.console.run(request.command, request.timeout)
    except ConsoleTimeout:
        machine.require_alive()
        raise


async def _wait_log(
    machine: Machine, offset: int, timeout: float, what: str, done: Callable[[str], bool]
) -> ConsoleText:
    seen = [ConsoleText("", offset, offset)]

    async def check() -> ConsoleText | None:
        seen[0] = _read_log(machine, offset)
        return seen[0] if done(seen[0].text) else None

    def last() -> str:
        tail = seen[0].text.strip().splitlines()[-1:] or ["(nothing)"]
        return repr(tail[0][:160])

    def gone() -> str | None:
        return None if machine.alive else f"QEMU exited ({machine.log_tail()})"

    try:
        return await await_until(
            check,
            what=f"{what} on the console of {machine.name}",
            timeout=timeout,
            last=last,
            gone=gone,
            interval=0.1,
        )
    except WaitAborted as exc:
        raise VmGone(str(exc)) from None


@handles(ConsoleWaitFor)
async def _console_wait(
    agent: Agent, session: Session, request: ConsoleWaitFor, emit: Emit
) -> ConsoleText:
    import re

    pattern = re.compile(request.pattern)
    return await _wait_log(
        agent.machine(request.name),
        request.offset,
        request.timeout,
        repr(request.pattern),
        lambda text: bool(pattern.search(text)),
    )


@handles(WaitLoadPasses)
async def _wait_passes(
    agent: Agent, session: Session, request: WaitLoadPasses, emit: Emit
) -> ConsoleText:
    from testbed.loads import parse_load_output

    def done(text: str) -> bool:
        logs = parse_load_output(text)
        for ident, target in request.targets.items():
            log = logs.get(ident)
            last = log.last if log else None
            if last is None or last.passes < target:
                return False
        return True

    wanted = ", ".join(f"{k} passes>={v}" for k, v in request.targets.items())
    return await _wait_log(
        agent.machine(request.name), request.offset, request.timeout, wanted, done
    )


# -- guest memory ----------------------------------------------------------------------------
@handles(RamDump)
async def _ram_dump(agent: Agent, session: Session, request: RamDump, emit: Emit) -> RamDigest:
    agent.drop_dump(request.name)
    digest = await ramdump.digest_ram(agent.machine(request.name))
    agent.digests[request.name] = digest
    return digest


async def _kept(agent: Agent, name: str) -> ramdump.KeptDump:
    """The RAM digested by the last ram.dump, kept in a file (dumped again on first use:
    only a comparison that found a difference, or a negative control, reads pages)."""
    async with agent.keeping:  # one file dump at a time: they share the VM's ram.elf
        kept = agent.dumps.get(name)
        if kept is not None:
            return kept
        digest = agent.digests.get(name)
        if digest is None:
            raise UserError(f"no RAM dump of {name!r} is kept", "dump it first (ram.dump)")
        kept = await ramdump.keep(agent.machine(name), digest)
        if agent.digests.get(name) is not digest:  # dropped or dumped again meanwhile
            kept.close()
            raise UserError(f"the RAM dump of {name!r} was dropped meanwhile", "dump it again")
        agent.dumps[name] = kept
        return kept


@handles(RamPageDigest)
async def _ram_page_digest(
    agent: Agent, session: Session, request: RamPageDigest, emit: Emit
) -> PageDigests:
    kept = await _kept(agent, request.name)

    def work() -> dict[str, str]:
        return {
            str(b): base64.b64encode(ramdump.page_crcs(kept, b)).decode() for b in request.blocks
        }

    return PageDigests(await asyncio.to_thread(work))


@handles(RamPeek)
async def _ram_peek(agent: Agent, session: Session, request: RamPeek, emit: Emit) -> PageHeads:
    kept = await _kept(agent, request.name)
    return PageHeads({str(p): kept.head(p, request.length).hex() for p in request.pages})


@handles(RamFind)
async def _ram_find(agent: Agent, session: Session, request: RamFind, emit: Emit) -> PageList:
    kept = await _kept(agent, request.name)
    return PageList(kept.find_heads(bytes.fromhex(request.head_hex), request.limit))


@handles(RamDrop)
async def _ram_drop(agent: Agent, session: Session, request: RamDrop, emit: Emit) -> Done:
    agent.drop_dump(request.name)
    return Done()


@handles(RamPoke)
async def _ram_poke(agent: Agent, session: Session, request: RamPoke, emit: Emit) -> Poked:
    from testbed.node.gdbstub import GdbRemote

    machine = agent.machine(request.name)
    if not machine.spec.gdb_port:
        raise UserError(
            f"VM {request.name} was started without a gdbstub",
            "start it with a gdb port (the scenario does for negative controls)",
        )
    before = await machine.status()
    address = ramdump.RAM_BASE + request.page * ramdump.PAGE
    data = bytes.fromhex(request.data_hex)
    port = machine.spec.gdb_port

    def write() -> None:
        gdb = GdbRemote("127.0.0.1", port)
        try:
            gdb.write_physical(address, data)
        finally:
            gdb.close()

    agent.drop_dump(request.name)  # its RAM will not be what was digested (even if it fails)
    await asyncio.to_thread(write)
    return Poked(request.page, hex(address), len(data), before, await machine.status())


# -- migration -------------------------------------------------------------------------------
@handles(Migrate)
async def _migrate(
    agent: Agent, session: Session, request: Migrate, emit: Emit
) -> MigrationOutcome:
    async def on_sample(sample: MigrationSample) -> None:
        await emit(codec.to_json(sample))

    return await migrate(agent.machine(request.name), request.uri, request.settings, on_sample)


@handles(PrepareIncoming)
async def _prepare_incoming(
    agent: Agent, session: Session, request: PrepareIncoming, emit: Emit
) -> Done:
    await prepare(agent.machine(request.name))
    return Done()


# -- helpers -------------------------------------------------------------------------------
@handles(HelperStart)
async def _helper_start(
    agent: Agent, session: Session, request: HelperStart, emit: Emit
) -> HelperInfo:
    existing = agent.helpers.get(request.name)
    if existing is not None and existing.running:
        raise UserError(f"helper {request.name} already runs on {agent.node}")
    helper = helper_mod.Helper(request.name, request.argv, agent.helper_root)
    agent.helpers[request.name] = helper
    session.helpers.add(request.name)
    await helper.start(request.ready_text, request.ready_port, request.timeout)
    assert helper.proc is not None
    return HelperInfo(request.name, helper.proc.pid, str(helper.log))


@handles(HelperWait)
async def _helper_wait(
    agent: Agent, session: Session, request: HelperWait, emit: Emit
) -> HelperExit:
    return await agent.helper(request.name).wait(request.timeout)


@handles(HelperSignal)
async def _helper_signal(
    agent: Agent, session: Session, request: HelperSignal, emit: Emit
) -> HelperExit:
    try:
        sig = signal.Signals[request.signal]
    except KeyError:
        raise UserError(f"unknown signal {request.signal!r}") from None
    return await agent.helper(request.name).signal(sig, request.timeout)


def main(socket_path: str = protocol.AGENT_SOCKET) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    missing = [r.OP for r in protocol.ALL_REQUESTS if r.OP not in HANDLERS]
    assert not missing, f"no handler for {missing}"
    asyncio.run(Agent(socket_path).serve())
    return 0


_unused: tuple[object, ...] = (Request,)
