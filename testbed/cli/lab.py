"""testbed up|down|status and route debugging: routes, trace, ping, shell, exec,
switch-route, graph."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any, cast

from testbed import codec
from testbed.cli.output import err, out, print_json, table
from testbed.config import DEFAULT_LAB, DEFAULT_SUITE, SUITES

if TYPE_CHECKING:
    from testbed.lab.lab import Lab
    from testbed.lab.routes import NodeRoutes
    from testbed.protocol import RouteEntry
from testbed.errors import UserError


def _lab(args: argparse.Namespace, with_topology: bool = False) -> Lab:
    from testbed import docker_client, topology
    from testbed.config import check_lab_name
    from testbed.lab.lab import Lab

    check_lab_name(args.lab)
    if with_topology:
        check_topology_option(args.topology)
    topo = topology.load(args.topology) if with_topology else None
    return Lab(docker_client.connect(), args.lab, topo, getattr(args, "qemu_suite", DEFAULT_SUITE))


def check_topology_option(path: str | None) -> None:
    if path is not None and not path.strip():
        raise UserError(
            "--topology is empty", "give a topology TOML file, or leave it out for the seed's"
        )


def check_bandwidth(rate: str | None) -> None:
    """A tc rate (e.g. 1gbit), refused on the host before anything is contacted."""
    from testbed.matrix.cells import link_bps

    if rate is not None and link_bps(rate) is None:
        raise UserError(
            f"--bandwidth: bad rate {rate!r}", "use a number with kbit, mbit or gbit, e.g. 1gbit"
        )


def _check_destination(dst: str) -> None:
    """An address (anything starting with a digit: node names start with a letter) is
    checked on the host, before the lab is contacted."""
    from testbed.lab.routes import check_address

    if dst[:1].isdigit():
        check_address(dst)


def cmd_up(args: argparse.Namespace) -> int:
    check_bandwidth(args.bandwidth)
    lab = _lab(args, with_topology=True)
    started = time.monotonic()
    with err.status(f"bringing lab {lab.name} up") as status:

        def step(text: str) -> None:
            status.update(text)
            err.print(f"  {text}", highlight=False)

        state = lab.up(bandwidth=args.bandwidth, on_step=step)
    seconds = time.monotonic() - started
    if args.json:
        print_json({**_status_json(state), "seconds": round(seconds, 2)})
        return 0
    _print_status(state)
    out.print(f"lab {lab.name} is up ({seconds:.1f} s)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from testbed import cleanup, docker_client
    from testbed.config import check_lab_name

    lab = None if args.all else check_lab_name(args.lab)
    client = docker_client.connect()
    started = time.monotonic()
    removed = cleanup.remove_labelled(client, lab=lab)
    seconds = time.monotonic() - started
    if args.json:
        print_json({**removed.to_dict(), "seconds": round(seconds, 2)})
    else:
        out.print(f"{removed.summary()} ({seconds:.1f} s)")
    return 0


def _print_status(state: Any) -> None:
    out.print(
        table(
            f"lab {state.lab}: network {state.network or '-'} {state.subnet or ''}, volume "
            f"{state.volume or '-'}",
            ["node", "role", "container", "state", "address", "image"],
            [
                [n.name, n.role, n.container, n.state, n.address, n.image or "-"]
                for n in state.nodes
            ],
        )
    )


def cmd_status(args: argparse.Namespace) -> int:
    state = _lab(args).status()
    if args.json:
        print_json(_status_json(state))
    elif not state.exists:
        out.print(f"lab {state.lab} is not up")
    else:
        _print_status(state)
        out.print("healthy" if state.healthy else "[red]not healthy[/red]: run `testbed up`")
    return 0 if state.healthy else 1


def _status_json(state: Any) -> dict[str, Any]:
    data = codec.to_json(state)
    assert isinstance(data, dict)
    return data


def _route_text(route: RouteEntry) -> str:
    via = f" via {route.gateway}" if route.gateway else ""
    dev = f" dev {route.dev}" if route.dev else ""
    return f"{route.dst}{via}{dev}"


def _routes_json(r: NodeRoutes) -> dict[str, Any]:
    return {
        "node": r.node,
        "routes": codec.to_json(r.actual),
        "expected": codec.to_json(r.expected),
        "missing": codec.to_json(r.missing),
        "unexpected": codec.to_json(r.unexpected),
        "matches": r.matches,
        "notes": r.notes,
    }


def cmd_routes(args: argparse.Namespace) -> int:
    found = _lab(args).routes(args.node)
    ok = all(r.matches for r in found)
    if args.json:
        print_json({"matches": ok, "nodes": [_routes_json(r) for r in found]})
        return 0 if ok else 1
    for r in found:
        rows = []
        missing = {_route_text(m) for m in r.missing}
        for route in r.actual:
            mark = "[red]unexpected[/red]" if route in r.unexpected else "[green]ok[/green]"
            rows.append([_route_text(route), mark])
        rows += [[text, "[red]missing[/red]"] for text in sorted(missing)]
        verdict = "as the topology says" if r.matches else "DIFFERS from the topology"
        title = f"{r.node}: {verdict}" + "".join(f" ({note})" for note in r.notes)
        out.print(table(title, ["route (ip route)", "vs topology"], rows))
    return 0 if ok else 1


def cmd_trace(args: argparse.Namespace) -> int:
    _check_destination(args.dst)
    trace = _lab(args).trace(args.src, args.dst)
    if args.json:
        print_json(codec.to_json(trace))
        return 0 if trace.reached else 1
    out.print(
        table(
            f"trace {trace.src} -> {trace.dst}",
            ["hop", "node", "route get", "note"],
            [
                [
                    str(i + 1),
                    h.node,
                    (f"via {h.gateway} " if h.gateway else "") + (f"dev {h.dev}" if h.dev else ""),
                    h.note,
                ]
                for i, h in enumerate(trace.hops)
            ],
        )
    )
    path = " -> ".join(h.node for h in trace.hops)
    colour = "green" if trace.reached else "red"
    out.print(f"{path}: [{colour}]{trace.end}[/{colour}]", highlight=False)
    return 0 if trace.reached else 1


def cmd_ping(args: argparse.Namespace) -> int:
    from testbed.lab.routes import resolve

    _check_destination(args.dst)
    if args.count < 1:
        raise UserError(f"--count {args.count} is out of range", "use 1 or more echo requests")
    lab = _lab(args)
    address = resolve(lab.topology, args.dst)
    code, output = lab.exec(
        args.src, ["ping", "-c", str(args.count), "-i", "0.2", "-W", "2", address]
    )
    sys.stdout.write(output)
    return code


def cmd_exec(args: argparse.Namespace) -> int:
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not command:
        raise UserError("no command given", "use testbed exec NODE -- COMMAND [ARGS...]")
    code, output = _lab(args).exec(args.node, command)
    sys.stdout.write(output)
    return code


def cmd_shell(args: argparse.Namespace) -> int:
    container = _lab(args).container(args.node)
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise UserError(
            "the interactive shell needs the docker command line client",
            f"install it, or use testbed exec {args.node} -- COMMAND",
        )
    shell = "bash" if container.exec_run(["sh", "-c", "command -v bash"])[0] == 0 else "sh"
    name = cast(str, container.name)  # an existing container: it has a name
    os.execv(docker_cli, [docker_cli, "exec", "-it", name, shell])
    return 0  # not reached


def cmd_switch_route(args: argparse.Namespace) -> int:
    lab = _lab(args)
    started = time.perf_counter()
    result = lab.switch_route(args.via, probe=args.probe)
    wall_ms = round((time.perf_counter() - started) * 1000, 1)
    topo = lab.topology
    reply_ms = (
        round((result.first_reply_at - result.switched_at) * 1000, 1)
        if result.first_reply_at
        else None
    )
    if args.json:
        print_json(
            {
                "node": topo.nfs.name,
                "dst": result.dst,
                "via": args.via,
                "gateway": result.via,
                "kernel_ms": result.kernel_ms,
                "wall_ms": wall_ms,
                "first_reply_ms": reply_ms,
            }
        )
    else:
        reply = ""
        if args.probe:
            reply = (
                f"; the guest answered {reply_ms} ms later"
                if reply_ms is not None
                else "; the guest did not answer"
            )
        out.print(
            f"{topo.nfs.name}: {result.dst} now via {result.via} ({args.via}): kernel "
            f"{result.kernel_ms:.3f} ms, round trip {wall_ms:.0f} ms{reply}"
        )
    return 0 if not args.probe or reply_ms is not None else 1


def cmd_graph(args: argparse.Namespace) -> int:
    from testbed import graph, topology

    guest_route = None
    check_topology_option(args.topology)
    if args.topology:
        topo = topology.load(args.topology)
    else:
        from testbed.config import check_lab_name

        check_lab_name(args.lab)  # a bad name is bad input, not a lab that is not up
        lab = None
        try:
            lab = _lab(args)
            topo = lab.topology
        except UserError:
            topo = topology.load(None)
        if lab is not None and args.format == "text":
            try:
                from testbed.protocol import RouteGet

                answer = lab.call(topo.nfs.name, RouteGet(topo.guest.ip))
                guest_route = (
                    f"via {answer.gateway}" if answer.gateway else answer.error or "directly"
                )
            except UserError:
                guest_route = None
    if args.format == "text":  # the only renderer that shows the guest's route
        rendered = graph.text(topo, guest_route)
    else:
        rendered = {"mermaid": graph.mermaid, "dot": graph.dot}[args.format](topo)
    sys.stdout.write(rendered + "\n")
    return 0


def register(sub: Any) -> None:
    def lab_parser(name: str, help: str, json_flag: bool = True, **kw: Any) -> Any:
        p = sub.add_parser(name, help=help, description=kw.pop("description", help), **kw)
        p.add_argument("--lab", default=DEFAULT_LAB, help=f"lab name (default {DEFAULT_LAB})")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print the result as JSON")
        return p

    up = lab_parser(
        "up",
        "create the lab: network, NFS server, boards, seed routes",
        description="Bring up the seed's three machines as containers with the "
        "topology's routes (pyroute2 inside each node). Idempotent.",
    )
    up.add_argument("--topology", metavar="FILE", help="topology TOML (default: the seed's)")
    up.add_argument(
        "--bandwidth",
        metavar="RATE",
        help="shape the boards' lab link with tc tbf, e.g. 1gbit (the seed's link)",
    )
    up.add_argument(
        "--qemu-suite",
        choices=SUITES,
        default=DEFAULT_SUITE,
        help="which board image (QEMU version) the boards run",
    )
    up.set_defaults(func=cmd_up)

    down = lab_parser("down", "remove everything a lab (or the testbed) created")
    down.add_argument(
        "--all",
        action="store_true",
        help="every testbed object of every lab, boot containers included",
    )
    down.set_defaults(func=cmd_down)

    lab_parser("status", "the lab's containers and whether it is healthy").set_defaults(
        func=cmd_status
    )

    routes = lab_parser("routes", "each node's routing table beside the topology's")
    routes.add_argument("node", nargs="?", help="only this node")
    routes.set_defaults(func=cmd_routes)

    trace = lab_parser("trace", "follow `ip route get` node by node from SRC to DST")
    trace.add_argument("src", help="node to start at")
    trace.add_argument("dst", help="node, guest, or IPv4 address")
    trace.set_defaults(func=cmd_trace)

    ping = lab_parser("ping", "ping DST from node SRC", json_flag=False)
    ping.add_argument("src", help="node to ping from")
    ping.add_argument("dst", help="node, guest, or IPv4 address")
    ping.add_argument("--count", type=int, default=3, help="echo requests (3)")
    ping.set_defaults(func=cmd_ping)

    shell = lab_parser("shell", "an interactive shell in a node", json_flag=False)
    shell.add_argument("node")
    shell.set_defaults(func=cmd_shell)

    exe = lab_parser("exec", "run a command in a node: testbed exec NODE -- CMD", json_flag=False)
    exe.add_argument("node")
    exe.add_argument("cmd", nargs="*", help="-- COMMAND [ARGS...]")
    exe.set_defaults(func=cmd_exec)

    switch = lab_parser(
        "switch-route",
        "point the NFS server's host route to the guest at a board (atomic ip route replace)",
    )
    switch.add_argument("--via", required=True, metavar="BOARD", help="gauss-a or gauss-b")
    switch.add_argument(
        "--probe",
        action="store_true",
        help="then send echo requests to the guest until it answers, and time it",
    )
    switch.set_defaults(func=cmd_switch_route)

    graph = lab_parser(
        "graph", "draw the topology (the lab's, or the file's, or the seed's)", json_flag=False
    )
    graph.add_argument("--topology", metavar="FILE", help="draw this topology file")
    graph.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    graph.set_defaults(func=cmd_graph)
