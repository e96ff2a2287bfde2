"""The topology drawn: as text for the terminal, and as Mermaid or Graphviz dot."""

from __future__ import annotations

from testbed.topology import Topology


def _via(topology: Topology, gateway: str | None) -> str:
    node = topology.node_by_address(gateway) if gateway else None
    return f"{gateway} ({node.name})" if node else str(gateway)


def text(topology: Topology, guest_route: str | None = None) -> str:
    """A picture for the terminal; ``guest_route`` is the NFS server's live route to the
    guest when the lab is up."""
    net = topology.network
    lines = [
        f"lab network {net.subnet}  (docker bridge; {net.gateway} is the host side, "
        "no node routes through it)"
    ]
    for i, node in enumerate(topology.nodes):
        last = i == len(topology.nodes) - 1
        branch, cont = ("└─", "   ") if last else ("├─", "│  ")
        flags = node.role + (", forwarding" if node.forwarding else "")
        lines.append(f"{branch} {node.name:<10} eth0 {node.address:<16} [{flags}]")
        for route in node.routes:
            lines.append(f"{cont}    route {route.dst} via {_via(topology, route.gateway)}")
        for tap in node.taps:
            lines.append(
                f"{cont}    {tap.name} {tap.address} {tap.mac} ── guest "
                f"{topology.guest.address} (default via {topology.guest.gateway})"
            )
    if guest_route:
        lines.append(f"now: {topology.nfs.name} reaches the guest {guest_route}")
    return "\n".join(lines)


def mermaid(topology: Topology) -> str:
    ident = {n.name: n.name.replace("-", "_") for n in topology.nodes}
    lines = ["graph LR", f'  lan(["lab network {topology.network.subnet}"])']
    for node in topology.nodes:
        lines.append(f'  {ident[node.name]}["{node.name}<br/>{node.address}<br/>{node.role}"]')
        lines.append(f"  lan --- {ident[node.name]}")
        for tap in node.taps:
            guest = f"guest_{ident[node.name]}"
            lines.append(f'  {guest}(["guest {topology.guest.address}"])')
            lines.append(f'  {ident[node.name]} -- "{tap.name} {tap.address}" --- {guest}')
        for route in node.routes:
            target = topology.node_by_address(route.gateway or "")
            if target:
                lines.append(f'  {ident[node.name]} -. "{route.dst}" .-> {ident[target.name]}')
    return "\n".join(lines)


def dot(topology: Topology) -> str:
    lines = [
        "graph lab {",
        "  rankdir=LR;",
        f'  lan [shape=box, label="lab network\\n{topology.network.subnet}"];',
    ]
    for node in topology.nodes:
        lines.append(f'  "{node.name}" [label="{node.name}\\n{node.address}\\n{node.role}"];')
        lines.append(f'  lan -- "{node.name}";')
        for tap in node.taps:
            guest = f"guest@{node.name}"
            lines.append(f'  "{guest}" [shape=ellipse, label="guest\\n{topology.guest.address}"];')
            lines.append(f'  "{node.name}" -- "{guest}" [label="{tap.name}"];')
        for route in node.routes:
            target = topology.node_by_address(route.gateway or "")
            if target:
                lines.append(
                    f'  "{node.name}" -- "{target.name}" [style=dashed, label="{route.dst}"];'
                )
    lines.append("}")
    return "\n".join(lines)
