"""State errors carry their own exit codes (90-95), distinct from the source's (80-89) and Kafka's (65-78)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_bridge.pipeline import RecoveryError
from cdc_bridge.sink.errors import FatalPublishError
from cdc_bridge.state import LmdbStateStore, PartitionCountMismatchError, StateStoreError, StateStoreLockedError
from cdc_bridge.state.exceptions import StateStoreFullError


def test_codes() -> None:
    assert StateStoreError.exit_code == 90
    assert PartitionCountMismatchError.exit_code == 91
    assert StateStoreLockedError.exit_code == 92
    assert StateStoreFullError.exit_code == 93
    assert RecoveryError.exit_code == 95
    assert FatalPublishError.exit_code == 70 != RecoveryError.exit_code


def test_the_raised_errors_carry_them(tmp_path: Path) -> None:
    with LmdbStateStore(tmp_path / "s", partitions=4):
        with pytest.raises(StateStoreLockedError) as locked:
            LmdbStateStore(tmp_path / "s", partitions=4)
        assert locked.value.exit_code == 92
    with pytest.raises(PartitionCountMismatchError) as mismatch:
        LmdbStateStore(tmp_path / "s", partitions=8)
    assert mismatch.value.exit_code == 91 and "keep partitions: 4" in str(mismatch.value)
