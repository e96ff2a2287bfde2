"""The seed's routing tables ("1) Routing" of the procedure), written out by hand:
connected routes first, then static ones."""

from __future__ import annotations

from testbed.topology import Route

SEED_TABLES = {
    "nfs": [
        Route("192.168.10.0/24", None, "eth0"),
        Route("192.168.2.100/32", "192.168.10.100", "eth0"),
    ],
    "gauss-a": [
        Route("192.168.10.0/24", None, "eth0"),
        Route("192.168.2.0/24", None, "tap0"),
        Route("default", "192.168.10.10", "eth0"),
    ],
    "gauss-b": [
        Route("192.168.10.0/24", None, "eth0"),
        Route("192.168.2.0/24", None, "tap0"),
        Route("default", "192.168.10.10", "eth0"),
    ],
}
