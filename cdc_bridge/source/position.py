"""Source positions: where a committed source transaction ends in the binlog.

A position is always a transaction boundary. It carries every coordinate we may
need to resume (GTID and/or binlog file + offset) and a total order used for
idempotence ("was this transaction already applied to this aggregate?").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """The position just after a committed source transaction.

    gtid:        MariaDB: the GTID list of what has been applied, e.g. "0-1-42"
                 (one "domain-server-seq" per domain, comma separated).
                 MySQL: the executed GTID set, e.g. "3E11FA47-...:1-42".
                 None when the server runs without GTIDs.
    binlog_file: binlog file name the transaction ended in, e.g. "mysql-bin.000003".
    binlog_pos:  offset just after the transaction's COMMIT/XID event.
    """

    gtid: str | None
    binlog_file: str
    binlog_pos: int

    @property
    def order_key(self) -> tuple[int, int]:
        """Total order on one server's binlog: (file sequence number, offset)."""
        return (binlog_file_index(self.binlog_file), self.binlog_pos)

    def __lt__(self, other: "SourcePosition") -> bool:
        return self.order_key < other.order_key

    def __le__(self, other: "SourcePosition") -> bool:
        return self.order_key <= other.order_key

    def __gt__(self, other: "SourcePosition") -> bool:
        return self.order_key > other.order_key

    def __ge__(self, other: "SourcePosition") -> bool:
        return self.order_key >= other.order_key

    def to_dict(self) -> dict[str, Any]:
        return {"gtid": self.gtid, "binlog_file": self.binlog_file, "binlog_pos": self.binlog_pos}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourcePosition":
        return cls(gtid=d.get("gtid"), binlog_file=d["binlog_file"], binlog_pos=int(d["binlog_pos"]))

    def __str__(self) -> str:
        where = f"{self.binlog_file}:{self.binlog_pos}"
        return f"{self.gtid} ({where})" if self.gtid else where


def binlog_file_index(name: str) -> int:
    """'mysql-bin.000042' -> 42. Binlog files are numbered in write order."""
    _, _, suffix = name.rpartition(".")
    try:
        return int(suffix)
    except ValueError:
        return 0
