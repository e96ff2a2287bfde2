"""Rates as tc spells them (``100mbit``, ``1gbit``), in bits per second."""

from __future__ import annotations

_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}


def parse_rate(rate: str) -> int:
    """``1gbit`` -> 1000000000 (bits per second), as tc spells rates."""
    text = rate.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)]
            try:
                value = float(number)
            except ValueError:
                break
            if value <= 0:
                break
            return int(value * _UNITS[unit])
    raise ValueError(f"bad rate {rate!r}: use a number with kbit, mbit or gbit, e.g. 1gbit")
