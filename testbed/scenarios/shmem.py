"""Seed procedure 2: shared-memory replication from QEMU's own dirty log.

A guest dirties an ivshmem device whose memory is /dev/shm/aeshmem on gauss-a; the
replication daemon (testbed.node.replicate) keeps a destination file in sync from the
migration stream, locally or on gauss-b (--remote), compares at every convergence while
QEMU has the VM paused, and, when the guest program has stopped, converges a last time,
compares, resumes the VM and exits."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import docker

from testbed import images, topology
from testbed.arch import get_arch
from testbed.errors import UserError
from testbed.lab import Lab
from testbed.node.accel import ACCELS

LOG = logging.getLogger(__name__)

SHM_PATH = "/dev/shm/aeshmem"
WORK = "/run/testbed/replica"
REPLICA = f"{WORK}/aeshmem"
RESULT = f"{WORK}/result.json"
DAEMON_LOG = f"{WORK}/daemon.log"
RECEIVER_PORT = 7777
WORKLOADS = ("dirty", "remap")
_SIZE = re.compile(r"^(\d+)([KM])$")
_SUM = re.compile(r"tstaeshm: sum -r (\d+) (\d+)")

StepCallback = Callable[[str], None]


@dataclass
class ShmemParams:
    arch: str = "armv8"
    shm_size: str = "1M"
    workload: str = "remap"
    duration: float = 10.0
    remote: bool = False
    drop_every: int | None = None  # negative control
    accel: str = "auto"
    mem_mb: int = 512
    suite: str = images.DEFAULT_SUITE
    lab: str = "gauss"
    topology_file: str | None = None
    until_quiet: float = 1.5
    checkpoint_every: float = 3.0
    restart_daemon_after: float | None = None  # kill -9 the daemon then, start a new one
    shm_first: bool = False  # the shared block first in RAM order (QEMU 10.0.2 aborts)

    def validate(self) -> None:
        get_arch(self.arch)
        if self.accel not in ACCELS:
            raise UserError(
                f"unknown accelerator {self.accel!r}", f"use one of {', '.join(ACCELS)}"
            )
        if self.workload not in WORKLOADS:
            raise UserError(
                f"unknown workload {self.workload!r}", f"use one of {', '.join(WORKLOADS)}"
            )
        m = _SIZE.match(self.shm_size)
        size = int(m.group(1)) << (10 if m.group(2) == "K" else 20) if m else 0
        if not m or size < 4096 or size % 4096 or size > 64 << 20:
            raise UserError(
                f"--shm-size {self.shm_size!r} is not a size from 4K to 64M in whole pages",
                "use e.g. 1M (the seed's) or 256K",
            )
        if not 0 < self.duration <= 3600:
            raise UserError(f"--duration {self.duration} is out of range", "use 1 to 3600 s")
        if self.drop_every is not None and self.drop_every < 1:
            raise UserError("--drop-every must be 1 or more")
        images.check_suite(self.suite)


@dataclass
class ShmemResult:
    scenario: str
    arch: str
    qemu_version: str
    accel: str
    workload: str
    verdict: str
    remote: bool
    rounds: int
    pages_copied: int
    checkpoints: dict[str, int]
    inexact_checkpoints: list[dict[str, Any]]
    final: dict[str, Any]
    replication_mbps: float
    stop_to_exit_seconds: float | None
    guest: dict[str, Any]
    daemon: dict[str, Any]
    failures: list[str]
    wall_seconds: float
    params: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("artifacts")
        return data


class ShmemScenario:
    def __init__(
        self, client: docker.DockerClient, params: ShmemParams, on_step: StepCallback | None = None
    ) -> None:
        params.validate()
        self.params = params
        self.step = on_step or (lambda text: LOG.info("%s", text))
        topo = topology.load(params.topology_file) if params.topology_file else None
        self.lab = Lab(client, params.lab, topo, params.suite)

    def vm(self, *args: str) -> dict[str, Any]:
        return self.lab.agent(self.board, "vm", *args)

    def run(self) -> ShmemResult:
        p = self.params
        started = time.monotonic()
        self.lab.up(on_step=lambda text: LOG.info("%s", text))
        self.step(f"lab {p.lab}: up")
        topo = self.lab.topology
        self.board, self.peer = topo.boards[0].name, topo.boards[1].name
        for board in (self.board, self.peer):
            self.lab.agent(board, "vm", "stop")
            self.lab.exec(
                board,
                [
                    "sh",
                    "-c",
                    f"pkill -f 'testbed.node (replicate|receive)'; "
                    f"rm -rf {WORK} {SHM_PATH}; mkdir -p {WORK}",
                ],
            )
        try:
            return self._run(started)
        finally:
            self.lab.exec(self.peer, ["pkill", "-f", "testbed.node receive"])
            self.lab.exec(self.board, ["pkill", "-f", "testbed.node replicate"])
            self.lab.agent(self.board, "vm", "stop")
            self.lab.exec(self.board, ["rm", "-f", SHM_PATH])

    def _run(self, started: float) -> ShmemResult:
        p = self.params
        topo = self.lab.topology
        self.step(f"QEMU on {self.board}: {p.arch} with ivshmem-plain on {SHM_PATH} ({p.shm_size})")
        spec = {
            "arch": p.arch,
            "accel": p.accel,
            "mem_mb": p.mem_mb,
            "shm_path": SHM_PATH,
            "shm_size": p.shm_size,
            "shm_first": p.shm_first,
        }
        vm = self.vm("start", "--spec", json.dumps(spec))
        ready = self.vm("ready", "--timeout", "120")
        self.step(
            f"guest ready after {ready['seconds']:.1f} s (QEMU {vm['qemu_version']}, {vm['accel']})"
        )
        remote = None
        if p.remote:
            remote = f"{topo.node(self.peer).address}:{RECEIVER_PORT}"
            self.lab.container(self.peer).exec_run(
                [
                    "sh",
                    "-c",
                    (
                        f"exec python3 -m testbed.node receive --listen 0.0.0.0:{RECEIVER_PORT} "
                        f"--dest {REPLICA} --serve-forever > {WORK}/receiver.log 2>&1"
                    ),
                ],
                detach=True,
            )
            self.wait_listening(self.peer, RECEIVER_PORT)
            self.step(f"receiver on {self.peer} at {remote}")
        stopped_at = None
        result = None
        try:
            stopped_at, result = self.replicate(remote)
        except UserError:
            if self.vm("alive")["alive"]:
                raise
            LOG.info("QEMU died during the replication")  # reported as the verdict below
        exited_at = time.monotonic()
        artifacts = {
            "console.log": self.vm("console")["text"],
            "daemon.log": self.lab.exec(self.board, ["cat", DAEMON_LOG])[1],
            "qemu.log": self.lab.exec(self.board, ["cat", "/run/testbed/vm/guest/qemu.log"])[1],
        }
        failures: list[str] = []
        guest: dict[str, Any] = {"tstaeshm": _summary(artifacts["console.log"])}
        if result is None:
            qemu_alive = self.vm("alive")["alive"]
            tail = (artifacts["qemu.log"].strip().splitlines() or ["(no output)"])[-1]
            daemon_tail = (artifacts["daemon.log"].strip().splitlines() or ["(no output)"])[-1]
            failures.append(
                f"QEMU exited: {tail}"
                if not qemu_alive
                else f"the daemon ended without a result: {daemon_tail}"
            )
            result = {}
        else:
            failures += self.judge(result)
            guest.update(self.guest_checksum(result))
            if (
                guest.get("sum_r")
                and result.get("final")
                and guest["sum_r"].split() != result["final"]["sum_r_src"].split()
            ):
                failures.append(
                    f"the guest's checksum {guest['sum_r']} differs from the "
                    f"host's {result['final']['sum_r_src']}"
                )
        final = result.get("final") or {}
        checkpoints = result.get("checkpoint_summary", {"count": 0, "exact": 0, "inexact": 0})
        return ShmemResult(
            scenario="shmem",
            arch=p.arch,
            qemu_version=vm["qemu_version"],
            accel=vm["accel"],
            workload=p.workload,
            verdict="fail" if failures else "pass",
            remote=p.remote,
            rounds=result.get("rounds", 0),
            pages_copied=result.get("pages_copied", 0),
            checkpoints=checkpoints,
            inexact_checkpoints=result.get("inexact", []),
            final={
                "identical": bool(final.get("exact")),
                "differing_pages": final.get("differing_pages", []),
                "sum_r_src": final.get("sum_r_src"),
                "sum_r_dest": final.get("sum_r_dest"),
            },
            replication_mbps=result.get("replication_mbps", 0.0),
            stop_to_exit_seconds=round(exited_at - stopped_at, 2) if stopped_at else None,
            guest=guest,
            daemon={
                k: v
                for k, v in result.items()
                if k not in ("inexact", "final", "checkpoint_summary")
            },
            failures=failures,
            wall_seconds=round(time.monotonic() - started, 1),
            params=asdict(p),
            artifacts=artifacts,
        )

    def replicate(self, remote: str | None) -> tuple[float | None, dict[str, Any] | None]:
        """Daemon, guest program, and the wait for the daemon's result; returns when the
        guest program stopped and the daemon's result (None if it has none)."""
        p = self.params
        self.start_daemon(remote)
        self.step(f"guest: tstaeshm {p.workload} --duration {p.duration:g}")
        console_before = len(self.vm("console")["text"])
        self.vm("send", "--text", f"tstaeshm {p.workload} --duration {p.duration:g} &\\n")
        workload_started = time.monotonic()
        restarted = False
        deadline = workload_started + p.duration + 120
        stopped_at = None
        result = None
        while time.monotonic() < deadline:
            if (
                p.restart_daemon_after is not None
                and not restarted
                and time.monotonic() - workload_started >= p.restart_daemon_after
            ):
                self.step("killing the daemon (SIGKILL) and starting a new one")
                self.lab.exec(self.board, ["pkill", "-9", "-f", "testbed.node replicate"])
                time.sleep(0.5)
                self.start_daemon(remote)
                restarted = True
            if (
                stopped_at is None
                and "tstaeshm: summary"
                in self.vm("console", "--offset", str(console_before))["text"]
            ):
                stopped_at = time.monotonic()
                self.step("the guest program stopped; waiting for the daemon's last round")
            code, out = self.lab.exec(self.board, ["cat", RESULT])
            if code == 0 and out.strip():
                result = json.loads(out)
                break
            if not self.vm("alive")["alive"]:
                break
            code, _ = self.lab.exec(self.board, ["pgrep", "-f", "testbed.node replicate"])
            if code != 0 and stopped_at is not None and time.monotonic() - stopped_at > 5:
                break  # the daemon is gone without a result
            time.sleep(0.3)
        return stopped_at, result

    def start_daemon(self, remote: str | None) -> None:
        p = self.params
        target = f"--remote {remote}" if remote else f"--dest {REPLICA}"
        drop = f" --drop-every {p.drop_every}" if p.drop_every else ""
        command = (
            f"exec python3 -m testbed.node replicate "
            f"--qmp /run/testbed/vm/guest/qmp-replicate.sock --shm {SHM_PATH} {target}"
            f"{drop} --until-quiet {p.until_quiet:g} --checkpoint-every "
            f"{p.checkpoint_every:g} --result {RESULT} >> {DAEMON_LOG} 2>&1"
        )
        self.lab.container(self.board).exec_run(["sh", "-c", command], detach=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = self.lab.exec(self.board, ["cat", DAEMON_LOG])[1]
            if log.count("pre-copied") > getattr(self, "_daemons", 0):
                self._daemons = getattr(self, "_daemons", 0) + 1
                self.step(
                    f"replication daemon on {self.board}: pre-copy done, "
                    f"{'to ' + remote if remote else 'local destination'}"
                )
                return
            if "TESTBED-RESULT" in log and "error" in log.splitlines()[-1]:
                raise UserError(f"the replication daemon failed: {log.strip().splitlines()[-1]}")
            time.sleep(0.2)
        raise UserError("the replication daemon did not start within 30 s")

    def wait_listening(self, node: str, port: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            code, out = self.lab.exec(node, ["cat", "/proc/net/tcp"])
            if f":{port:04X} 00000000:0000 0A" in out:
                return
            time.sleep(0.2)
        raise UserError(f"the receiver on {node} is not listening on port {port}")

    def judge(self, result: dict[str, Any]) -> list[str]:
        failures = []
        for c in result.get("inexact", []):
            pages = c["differing_pages"]
            failures.append(
                f"checkpoint {c['epoch']}{' (final)' if c['final'] else ''}: "
                f"{len(pages)} page(s) differ: {pages[:16]}"
            )
        final = result.get("final")
        if not final:
            failures.append("no final checkpoint")
        if result.get("dropped_pages"):
            failures.append(
                f"pages dropped on purpose (--drop-every): "
                f"{sorted(set(result['dropped_pages']))[:16]}"
            )
        if not result.get("resumed"):
            failures.append("the VM was not running after the daemon's last round")
        return failures

    def guest_checksum(self, result: dict[str, Any]) -> dict[str, Any]:
        """`tstaeshm sum` in the guest, after the daemon resumed it."""
        out = self.vm("run", "--cmd", "tstaeshm sum", "--timeout", "60")
        m = _SUM.search(out["output"])
        return {"sum_r": f"{int(m.group(1)):05d} {m.group(2)}" if m else None}


def _summary(console: str) -> str | None:
    lines = [ln for ln in console.splitlines() if "tstaeshm: summary" in ln]
    return lines[-1].strip() if lines else None
