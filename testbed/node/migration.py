"""A live migration driven from the source's agent, timed by QEMU's own events.

The MIGRATION events (``events`` capability on) give every state change with QEMU's
timestamp, MIGRATION_PASS every dirty-sync round, STOP the switchover; query-migrate is
read only for the progress figures (bytes, rate, dirty pages) that no event carries.
A ``hold`` keeps the migration iterating at downtime-limit 1 ms and a capped bandwidth for
that many seconds before letting it converge, forcing many dirty-sync rounds, as QEMU's
own migration-test does.  A migration that makes no progress for ``stall_timeout`` seconds,
or that runs past ``timeout``, is cancelled."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from testbed.codec import Json
from testbed.node.machine import Machine
from testbed.protocol import MigrationOutcome, MigrationSample, MigrationSettings
from testbed.wait import WaitTimeout, await_until

LOG = logging.getLogger(__name__)

# Off for every migration the testbed makes: the stream must carry plain pages, and the
# guest must not be slowed to make it converge.
CAPABILITIES_OFF = (
    "xbzrle",
    "compress",
    "auto-converge",
    "postcopy-ram",
    "multifd",
    "zero-blocks",
    "postcopy-preempt",
    "switchover-ack",
    "dirty-limit",
    "mapped-ram",
    "background-snapshot",
    "x-ignore-shared",
)
HOLD_DOWNTIME_MS = 1  # keep iterating (0 is refused by QEMU 7.2)
ENDED = ("completed", "failed", "cancelled")

SampleCallback = Callable[[MigrationSample], Awaitable[None]]


def capability_settings(available: Json, events: bool = True) -> list[Json]:
    """The ``migrate-set-capabilities`` argument: every capability of CAPABILITIES_OFF that
    this QEMU knows off, ``events`` on (``available``: query-migrate-capabilities)."""
    known = {
        str(c["capability"])
        for c in (available if isinstance(available, list) else [])
        if isinstance(c, dict)
    }
    settings: list[Json] = [
        {"capability": c, "state": False} for c in CAPABILITIES_OFF if c in known
    ]
    if events and "events" in known:
        settings.append({"capability": "events", "state": True})
    return settings


async def prepare(machine: Machine) -> None:
    """Capabilities for a migration in or out of ``machine``."""
    available = await machine.execute("query-migrate-capabilities")
    await machine.execute(
        "migrate-set-capabilities", {"capabilities": capability_settings(available)}
    )


def _sample(info: Json, at: float) -> MigrationSample:
    data = info if isinstance(info, dict) else {}
    ram = data.get("ram", {})
    ram = ram if isinstance(ram, dict) else {}

    def number(key: str) -> int:
        value = ram.get(key, 0)
        return int(value) if isinstance(value, (int, float)) else 0

    mbps = ram.get("mbps", 0.0)
    return MigrationSample(
        at=at,
        status=str(data.get("status", "none")),
        transferred=number("transferred"),
        remaining=number("remaining"),
        total=number("total"),
        mbps=float(mbps) if isinstance(mbps, (int, float)) else 0.0,
        dirty_pages_rate=number("dirty-pages-rate"),
        dirty_sync_count=number("dirty-sync-count"),
    )


async def migrate(
    machine: Machine, uri: str, settings: MigrationSettings, on_sample: SampleCallback
) -> MigrationOutcome:
    await prepare(machine)
    holding = settings.hold_seconds > 0
    await machine.execute(
        "migrate-set-parameters",
        {
            "max-bandwidth": settings.hold_bandwidth if holding else settings.max_bandwidth,
            "downtime-limit": HOLD_DOWNTIME_MS if holding else settings.downtime_limit_ms,
        },
    )
    seq = first_seq = machine.events.seq
    started_at = time.time()
    started = time.monotonic()
    await machine.execute("migrate", {"uri": uri})
    samples: list[MigrationSample] = []
    last_bytes, last_change = -1, started
    held = 0.0
    syncs_holding = 0
    status = "setup"
    error = ""
    while True:
        event = await machine.events.wait(seq, {"MIGRATION"}, settings.sample_interval)
        if not machine.alive:
            status, error = "failed", f"the source QEMU exited ({machine.log_tail()})"
            break
        sample = _sample(await machine.execute("query-migrate"), time.time())
        samples.append(sample)
        await on_sample(sample)
        if event is not None:
            seq = event.seq
        status = sample.status
        if status in ENDED:
            break
        now = time.monotonic()
        if holding and now - started >= settings.hold_seconds:
            holding = False
            held = now - started
            syncs_holding = sample.dirty_sync_count
            LOG.info(
                "%s: held %.1f s (%d syncs): letting it converge", machine.name, held, syncs_holding
            )
            await machine.execute(
                "migrate-set-parameters",
                {
                    "max-bandwidth": settings.max_bandwidth,
                    "downtime-limit": settings.downtime_limit_ms,
                },
            )
        if sample.transferred != last_bytes:
            last_bytes, last_change = sample.transferred, now
        elif now - last_change > settings.stall_timeout:
            error = (
                f"no progress for {settings.stall_timeout:.0f} s: cancelled (is the lab link "
                "down or the destination gone?)"
            )
            status = await _cancel(machine)
            break
        if now - started > settings.timeout:
            error = f"not converged in {settings.timeout:.0f} s: cancelled"
            status = await _cancel(machine)
            break
    if holding:  # ended (converged early, or failed) while still holding
        held = time.monotonic() - started
        syncs_holding = samples[-1].dirty_sync_count if samples else 0
    ended_at = time.time()
    info = await machine.execute("query-migrate") if machine.alive else {}
    info = info if isinstance(info, dict) else {}
    final = _sample(info, ended_at)
    if status == "failed" and not error:
        error = str(info.get("error-desc", "")) or "QEMU reports the migration failed"
    if status not in ("completed", "failed"):
        status = "failed" if status != "cancelled" else "cancelled"
    events = machine.events.after(first_seq)
    stopped = next((e.at for e in events if e.event == "STOP"), None)

    def figure(key: str) -> int | None:
        value = info.get(key)
        return int(value) if isinstance(value, (int, float)) else None

    ram = info.get("ram", {})
    ram = ram if isinstance(ram, dict) else {}

    def ram_int(key: str) -> int:
        value = ram.get(key, 0)
        return int(value) if isinstance(value, (int, float)) else 0

    return MigrationOutcome(
        status=status,
        error=error,
        started_at=started_at,
        ended_at=ended_at,
        stopped_at=stopped,
        total_ms=figure("total-time"),
        downtime_ms=figure("downtime"),
        setup_ms=figure("setup-time"),
        transferred_bytes=final.transferred,
        throughput_mbps=final.mbps,
        dirty_sync_count=final.dirty_sync_count,
        dirty_pages_rate=final.dirty_pages_rate,
        normal_pages=ram_int("normal"),
        zero_pages=ram_int("duplicate"),
        expected_downtime_ms=figure("expected-downtime"),
        held_seconds=round(held, 3),
        syncs_while_holding=syncs_holding,
        events=events,
        samples=samples,
    )


async def _cancel(machine: Machine) -> str:
    await machine.execute("migrate_cancel")
    seen = ["?"]

    async def ended() -> str | None:
        info = await machine.execute("query-migrate")
        seen[0] = str(info.get("status", "")) if isinstance(info, dict) else ""
        if seen[0] in ("cancelled", "failed", "completed"):
            return "failed" if seen[0] != "completed" else seen[0]
        await machine.events.wait(machine.events.seq, {"MIGRATION"}, 0.2)
        return None

    try:
        return await await_until(
            ended,
            what="the cancelled migration's end",
            timeout=30,
            last=lambda: seen[0],
            interval=0.0,
        )
    except WaitTimeout:
        LOG.warning("%s: the migration did not end 30 s after migrate_cancel", machine.name)
        return "failed"
