"""Browser tests drive Debian's Chromium; where it is missing they are skipped."""

from __future__ import annotations

import pytest

from .base import CHROMIUM


def pytest_collection_modifyitems(config, items):
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM}")
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)
