"""A node's network, through pyroute2 (runs inside the node; needs CAP_NET_ADMIN).

Taps, addresses, the routing table, route lookups and tc shaping.  Every operation is
idempotent: applying the same configuration twice leaves the same state."""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
import time

# pyroute2 ships neither type hints nor a py.typed marker (and there are no stubs)
from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from testbed.protocol import NetConfig, ProbeResult, RouteEntry, RouteLookup
from testbed.rates import parse_rate

LOG = logging.getLogger(__name__)

MAIN_TABLE = 254
TBF_HANDLE = 0x10000  # "1:", the root qdisc


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no interface {ifname}")
    return int(found[0])


def _prefix(dst: str) -> tuple[str, int]:
    if dst == "default":
        return "0.0.0.0", 0
    net = ipaddress.IPv4Network(dst)
    return str(net.network_address), net.prefixlen


def apply(config: NetConfig) -> list[str]:
    """Make the node's network what ``config`` says; returns what was done."""
    actions: list[str] = []
    with IPRoute() as ipr:
        for tap in config.taps:
            if not ipr.link_lookup(ifname=tap.name):
                ipr.link("add", ifname=tap.name, kind="tuntap", mode="tap")
                actions.append(f"created {tap.name}")
            idx = _index(ipr, tap.name)
            ipr.link("set", index=idx, address=tap.mac, state="up")
            ip, prefixlen = tap.address.split("/")
            ipr.addr("replace", index=idx, address=ip, prefixlen=int(prefixlen))
            # the connected route comes with a new address only: put it back if removed
            subnet = ipaddress.IPv4Interface(tap.address).network
            ipr.route(
                "replace",
                dst=str(subnet),
                oif=idx,
                prefsrc=ip,
                scope=253,
                proto=2,
                table=MAIN_TABLE,
            )
            actions.append(f"{tap.name} {tap.address} {tap.mac} up")
        wanted = {_prefix(r.dst) for r in config.routes}
        # Docker's default route (towards its gateway) and any stale static route go.
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if route.get_attr("RTA_GATEWAY") is None:
                continue  # connected routes belong to the addresses
            dst = route.get_attr("RTA_DST") or "0.0.0.0"
            key = (dst, route["dst_len"])
            if key not in wanted:
                ipr.route("del", dst=f"{dst}/{route['dst_len']}", table=MAIN_TABLE)
                actions.append(
                    f"removed {dst}/{route['dst_len']} via {route.get_attr('RTA_GATEWAY')}"
                )
        for r in config.routes:
            ipr.route("replace", dst=_netlink_dst(r.dst), gateway=r.gateway, table=MAIN_TABLE)
            actions.append(f"route {r.dst} via {r.gateway}")
    return actions


def routes() -> list[RouteEntry]:
    """The main IPv4 routing table as ``{dst, gateway, dev}`` entries."""
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        table = []
        for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            dst = route.get_attr("RTA_DST")
            table.append(
                RouteEntry(
                    dst=f"{dst}/{route['dst_len']}" if dst else "default",
                    gateway=route.get_attr("RTA_GATEWAY"),
                    dev=names.get(route.get_attr("RTA_OIF")),
                )
            )
    return table


def route_get(dst: str) -> RouteLookup:
    """``ip route get DST``: the route the kernel picks, or why there is none."""
    with IPRoute() as ipr:
        try:
            answer = ipr.route("get", dst=dst)[0]
        except NetlinkError as exc:
            return RouteLookup(
                dst, error=exc.args[1] if len(exc.args) > 1 else str(exc), forwarding=forwarding()
            )
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return RouteLookup(
            dst=dst,
            gateway=answer.get_attr("RTA_GATEWAY"),
            dev=names.get(answer.get_attr("RTA_OIF")),
            prefsrc=answer.get_attr("RTA_PREFSRC"),
            type={1: "unicast", 2: "local", 7: "unreachable"}.get(
                answer["type"], str(answer["type"])
            ),
            forwarding=forwarding(),
        )


def forwarding() -> bool:
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        return f.read().strip() == "1"


def replace_route(dst: str, gateway: str) -> float:
    """Atomic ``ip route replace``; returns the seconds the kernel took."""
    with IPRoute() as ipr:
        started = time.perf_counter()
        ipr.route("replace", dst=_netlink_dst(dst), gateway=gateway, table=MAIN_TABLE)
        return time.perf_counter() - started


def delete_route(dst: str) -> None:
    with IPRoute() as ipr:
        ipr.route("del", dst=_netlink_dst(dst), table=MAIN_TABLE)


def _netlink_dst(dst: str) -> str:
    return "0.0.0.0/0" if dst == "default" else dst


def shape(device: str, rate: str | None) -> str:
    """tc tbf on ``device`` at ``rate`` (e.g. ``1gbit``); None removes the shaping."""
    with IPRoute() as ipr:
        idx = _index(ipr, device)
        if rate is None:
            try:
                ipr.tc("del", index=idx, root=True)
            except NetlinkError as exc:
                if exc.code not in (2, 22, 95):  # ENOENT, EINVAL, EOPNOTSUPP: none to delete
                    raise
            return f"{device}: no shaping"
        bits = parse_rate(rate)
        burst = max(bits // 8 // 100, 32 * 1024)  # 10 ms of traffic, at least 32 KiB
        ipr.tc(
            "replace",
            kind="tbf",
            index=idx,
            handle=TBF_HANDLE,
            rate=f"{bits}bit",
            burst=burst,
            latency="50ms",
        )
        return f"{device}: tbf {rate} burst {burst}"


ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0


def probe(
    address: str, seconds: float, interval_ms: float, until_reply: bool = False
) -> ProbeResult:
    """ICMP echo requests to ``address`` every ``interval_ms`` for ``seconds`` (or until
    the first reply); counts the replies and times the first one (epoch seconds).  Uses an
    ICMP datagram socket, as ping does without CAP_NET_RAW."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    started_at = time.time()
    started = time.monotonic()
    deadline = started + seconds
    interval = interval_ms / 1000
    sent = replies = 0
    first: float | None = None
    next_send = started
    try:
        while True:
            now = time.monotonic()
            if now >= deadline or (until_reply and first is not None):
                break
            if now >= next_send:
                sent += 1
                # the kernel fills in the identifier and the checksum of a ping socket
                packet = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, 0, sent & 0xFFFF)
                try:
                    sock.sendto(packet + b"gauss-testbed", (address, 0))
                except OSError as exc:  # e.g. no route: keep trying until the deadline
                    LOG.debug("probe %s: %s", address, exc)
                next_send += interval
            ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, deadline) - now))
            if ready:
                try:
                    data = sock.recv(2048)
                except OSError:
                    continue
                if data and data[0] == ICMP_ECHO_REPLY:
                    replies += 1
                    if first is None:
                        first = time.time()
    finally:
        sock.close()
    return ProbeResult(
        address, sent, replies, first, started_at, round(time.monotonic() - started, 3)
    )
