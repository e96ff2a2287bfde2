"""Medians, min and max of repeated measurements, printed and written alike by the
benchmarks (run as scripts: ``python benchmarks/NAME.py``, so this module is beside them)."""

from __future__ import annotations

import json
import statistics
from typing import Any


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def report(results: dict[str, dict[str, Any]], json_path: str | None) -> None:
    """One line per figure; the whole results also to ``json_path`` when given."""
    width = max(len(name) for name in results) + 1
    for name, value in results.items():
        print(
            f"{name:<{width}} median {value['median']:7.3f}  min {value['min']:7.3f}  "
            f"max {value['max']:7.3f}"
        )
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
