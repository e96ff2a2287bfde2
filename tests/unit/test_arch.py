from __future__ import annotations

import pytest

from testbed.arch import ARCHES, get_arch
from testbed.errors import UserError


def test_known_arches() -> None:
    assert set(ARCHES) == {"armv7", "armv8"}
    assert get_arch("armv7").uname == "armv7l" and get_arch("armv8").uname == "aarch64"
    assert get_arch("armv7").max_mem_mb == 3072  # LPAE guest crashes at -m 4096


def test_unknown_arch_names_the_choices() -> None:
    with pytest.raises(
        UserError,
        match=r"unknown guest architecture 'armv9': use one of "
        r"armv7, armv8",
    ):
        get_arch("armv9")
