"""Fixtures for the mapping tests; helpers are in mapping_helpers.py."""

from __future__ import annotations

import pytest

from mapping_helpers import MapDir


@pytest.fixture
def mapdir(tmp_path) -> MapDir:
    """An empty mappings directory; .write(name, yaml), .load(), .errors(), .error(key)."""
    d = tmp_path / "mappings"
    d.mkdir()
    return MapDir(d)
