"""Scenario results as JSON files and report directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(
    directory: str | Path, name: str, result: dict[str, Any], artifacts: dict[str, str]
) -> Path:
    """``DIR/NAME.json`` plus every artifact (consoles, QEMU logs) as its own file."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    for filename, text in artifacts.items():
        (out / f"{name}-{filename}").write_text(text)
    return out
