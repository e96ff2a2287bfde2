"""Reports: a detection matrix (or one run) as one self-contained HTML page, a Markdown
summary for CI and the results as JSON (:func:`testbed.report.writer.write_report`).

``model`` (what is shown, as data), ``plots`` (SVG charts), ``html`` (the page),
``markdown`` (the CI job summary), ``writer`` (the directory).

This package takes the name of the old module ``testbed/report.py``, which it shadows:
:func:`write_report` below is that module's function, unchanged, for ``testbed run
--report`` until the scenario rewrite replaces it; then ``testbed/report.py`` and this
function go."""

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
