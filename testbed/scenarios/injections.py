"""Negative controls of the migration procedure: faults injected for real, each of which
must make one check fail (a check that cannot fail proves nothing)."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.errors import UserError


@dataclass(frozen=True)
class Injections:
    """Negative controls: each makes one check fail for real, to prove that it can."""

    corrupt_page: int | None = None  # ram-pages: alter this guest page on the destination
    stale_load_page: bool = False  # load-stale: give a page of each load an older stamp
    time_jump: int = 0  # writeout-gap: move the destination guest's clock on by N s
    split_brain: bool = False  # unreachable-before-switch: resume the source after migrating
    no_route_switch: bool = False  # reachable-after-switch: leave the NFS route unswitched
    corrupt_disk: bool = False  # e2fsck: corrupt the root inode's link count before e2fsck

    @property
    def needs_gdb(self) -> bool:
        return self.corrupt_page is not None or self.stale_load_page


INJECTIONS = {
    "corrupt-page": "PAGE: alter guest page PAGE on the destination (ram-pages must fail)",
    "stale-load-page": (
        "give one page of each load mode an older stamp (load-stale must fail for each)"
    ),
    "time-jump": "S: move the destination guest's clock S seconds on (writeout-gap must fail)",
    "split-brain": "resume the source after the migration (unreachable-before-switch must fail)",
    "no-route-switch": "leave the NFS server's route unswitched (reachable-after-switch must fail)",
    "corrupt-disk": "corrupt the root inode's link count before e2fsck (e2fsck must fail)",
}


def parse_injections(texts: list[str], corrupt_page: int | None = None) -> Injections:
    values: dict[str, object] = {}
    for text in texts:
        name, _, arg = text.partition("=")
        if name not in INJECTIONS:
            raise UserError(
                f"--inject {text}: unknown fault {name!r}", f"use one of {', '.join(INJECTIONS)}"
            )
        if name in ("corrupt-page", "time-jump"):
            if not arg.isdigit():
                raise UserError(f"--inject {text}: {name} needs a number", f"e.g. {name}=30")
            values[name] = int(arg)
        elif arg:
            raise UserError(f"--inject {text}: {name} takes no value", f"use --inject {name}")
        else:
            values[name] = True
    page = values.get("corrupt-page", corrupt_page)
    return Injections(
        corrupt_page=int(page) if isinstance(page, int) else None,
        stale_load_page=bool(values.get("stale-load-page", False)),
        time_jump=int(values.get("time-jump", 0)),  # type: ignore[call-overload]
        split_brain=bool(values.get("split-brain", False)),
        no_route_switch=bool(values.get("no-route-switch", False)),
        corrupt_disk=bool(values.get("corrupt-disk", False)),
    )
