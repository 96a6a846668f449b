"""Helpers for the mapping tests (imported as `mapping_helpers`; the fixture lives in conftest.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdc_bridge.mapping.errors import MappingError, MappingProblem
from cdc_bridge.mapping.loader import load_mappings
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import RowChange, SourceTransaction

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "mappings"


class MapDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str, text: str) -> Path:
        p = self.path / name
        p.write_text(textwrap.dedent(text).lstrip("\n"))
        return p

    def load(self):
        return load_mappings(self.path)

    def errors(self) -> list[MappingProblem]:
        with pytest.raises(MappingError) as exc:
            load_mappings(self.path)
        return exc.value.errors

    def error(self, key: str) -> MappingProblem:
        """The one problem about `key` (asserts there is exactly one)."""
        errs = self.errors()
        found = [e for e in errs if e.key == key]
        assert len(found) == 1, f"expected one problem at {key!r}, got:\n" + "\n".join(map(str, errs))
        return found[0]


def txn(*changes: RowChange, gtid: str = "0-1-42", pos: int = 1234, ts: float = 1_700_000_000.0) -> SourceTransaction:
    return SourceTransaction(gtid=gtid, commit_ts=ts, position=SourcePosition(gtid, "mysql-bin.000003", pos),
                             changes=list(changes))


def ins(table: str, row: dict) -> RowChange:
    return RowChange(table, "insert", None, row)


def upd(table: str, before: dict, after: dict) -> RowChange:
    return RowChange(table, "update", before, after)


def dele(table: str, row: dict) -> RowChange:
    return RowChange(table, "delete", row, None)


def snap(table: str, row: dict) -> RowChange:
    return RowChange(table, "snapshot", None, row)
