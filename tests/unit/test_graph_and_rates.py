from __future__ import annotations

import pytest

from testbed import graph, topology
from testbed.rates import parse_rate


def test_text_graph_shows_every_node_route_and_tap() -> None:
    text = graph.text(topology.load(), guest_route="via 192.168.10.101")
    for needle in (
        "nfs",
        "192.168.10.10 ",
        "gauss-a",
        "192.168.10.100",
        "gauss-b",
        "route 192.168.2.100/32 via 192.168.10.100 (gauss-a)",
        "route default via 192.168.10.10 (nfs)",
        "tap0 192.168.2.1/24",
        "guest 192.168.2.100/24",
        "now: nfs reaches the guest via 192.168.10.101",
    ):
        assert needle in text


def test_mermaid_and_dot() -> None:
    seed = topology.load()
    mermaid = graph.mermaid(seed)
    assert mermaid.startswith("graph LR") and 'gauss_a -. "default" .-> nfs' in mermaid
    dot = graph.dot(seed)
    assert dot.startswith("graph lab {") and dot.endswith("}")
    assert '"nfs" -- "gauss-a" [style=dashed, label="192.168.2.100/32"];' in dot


@pytest.mark.parametrize(
    ("rate", "bits"),
    [("1gbit", 10**9), ("100mbit", 10**8), ("2.5gbit", 25 * 10**8), ("512kbit", 512000)],
)
def test_parse_rate(rate: str, bits: int) -> None:
    assert parse_rate(rate) == bits


@pytest.mark.parametrize("rate", ["fast", "0mbit", "-1gbit", "10MB/s", ""])
def test_bad_rate(rate: str) -> None:
    with pytest.raises(ValueError, match="use a number with kbit, mbit or gbit"):
        parse_rate(rate)
