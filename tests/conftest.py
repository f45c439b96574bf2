"""Tests marked ``@pytest.mark.anyio`` run under pytest's anyio plugin, on every backend their
``anyio_backend`` fixture names; pytest-trio's ``trio_mode`` would also mark them to run under Trio
(it marks every ``async def`` test), so that mark is taken off them again here."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers = [mark for mark in item.own_markers if mark.name != "trio"]
