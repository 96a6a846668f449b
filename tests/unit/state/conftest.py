"""Fixtures of the state store tests: a fresh 4-partition store in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_bridge.state import LmdbStateStore


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(path: Path):
    s = LmdbStateStore(path, partitions=4, map_size=1 << 20)
    yield s
    s.close()
