"""GTID helpers: MariaDB GTID lists and MySQL GTID sets, as plain strings in and out.

MariaDB: a GTID is "domain-server-seq"; a *GTID list* (@@gtid_binlog_pos, what
`SourcePosition.gtid` holds) has one GTID per replication domain, e.g. "0-1-42,1-7-3".
Sequence numbers grow per domain, so "where are we" is the last GTID of every domain.

MySQL: a GTID is "uuid:n"; a *GTID set* (@@gtid_executed) lists intervals per source
uuid, e.g. "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42:50". Tagged GTIDs (8.3+) are not
supported.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- MariaDB


@dataclass(frozen=True, slots=True, order=True)
class MariadbGtid:
    domain: int
    server: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> "MariadbGtid":
        try:
            d, s, n = (int(p) for p in text.strip().split("-"))
        except ValueError:
            raise ValueError(f"not a MariaDB GTID (domain-server-seq): {text!r}") from None
        if d < 0 or s < 0 or n < 0:
            raise ValueError(f"not a MariaDB GTID (domain-server-seq): {text!r}")
        return cls(d, s, n)

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


def parse_mariadb_gtid_list(text: str | None) -> dict[int, MariadbGtid]:
    """'0-1-42,1-7-3' -> {0: 0-1-42, 1: 1-7-3}. Empty/None -> {}.

    A list may name a domain once only; when it does not (a gtid_binlog_state lists
    every server of a domain) the highest seq wins, which is where the domain is.
    """
    out: dict[int, MariadbGtid] = {}
    if not text:
        return out
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        g = MariadbGtid.parse(part)
        cur = out.get(g.domain)
        if cur is None or g.seq > cur.seq:
            out[g.domain] = g
    return out


def format_mariadb_gtid_list(gtids: dict[int, MariadbGtid]) -> str:
    """Inverse of parse_mariadb_gtid_list; domains in ascending order (stable strings)."""
    return ",".join(str(gtids[d]) for d in sorted(gtids))


def advance_mariadb_gtid_list(gtid_list: str | None, gtid: str) -> str:
    """The list after the transaction `gtid` was applied: its domain now ends at it."""
    state = parse_mariadb_gtid_list(gtid_list)
    g = MariadbGtid.parse(gtid)
    state[g.domain] = g
    return format_mariadb_gtid_list(state)


def mariadb_position_available(wanted: str | None, first_binlog_gtid_list: str | None,
                               binlog_state: str | None) -> bool:
    """Can a MariaDB server stream the transactions after the GTID list `wanted`?

    first_binlog_gtid_list: the Gtid_list event of the oldest binlog file on the server,
        i.e. the last GTID per domain *before* what the files still hold.
    binlog_state: @@gtid_binlog_state (last GTID per domain and server in the binlogs).

    A domain is readable from `wanted` if its seq is not older than the oldest file's
    start (else: purged) and not newer than the server has written (else: diverged;
    the server refuses that as well).
    """
    want = parse_mariadb_gtid_list(wanted)
    first = parse_mariadb_gtid_list(first_binlog_gtid_list)
    state = parse_mariadb_gtid_list(binlog_state)
    for domain, g in want.items():
        start = first.get(domain)
        if start is not None and g.seq < start.seq:
            return False
        latest = state.get(domain)
        if latest is None:
            # the server never wrote this domain: nothing to resume from unless nothing was read
            if g.seq != 0:
                return False
        elif g.seq > latest.seq:
            return False
    # a domain the server has but `wanted` lacks would be streamed from its beginning,
    # which is only possible if no file of it was purged
    for domain, start in first.items():
        if domain not in want and start.seq > 0:
            return False
    return True


# ---------------------------------------------------------------- MySQL

Interval = tuple[int, int]  # inclusive


def parse_mysql_gtid_set(text: str | None) -> dict[str, list[Interval]]:
    """'uuid:1-5:7,uuid2:3' -> {'uuid': [(1, 5), (7, 7)], 'uuid2': [(3, 3)]} (normalized)."""
    out: dict[str, list[Interval]] = {}
    if not text:
        return out
    for member in text.replace("\n", "").split(","):
        member = member.strip()
        if not member:
            continue
        sid, *ranges = member.split(":")
        if not ranges:
            raise ValueError(f"not a MySQL GTID set member (uuid:interval[:interval]): {member!r}")
        intervals = out.setdefault(sid.lower(), [])
        for r in ranges:
            a, _, b = r.partition("-")
            try:
                lo, hi = int(a), int(b or a)
            except ValueError:
                raise ValueError(f"bad GTID interval {r!r} in {member!r} (tagged GTIDs are not supported)") from None
            if lo < 1 or hi < lo:
                raise ValueError(f"bad GTID interval {r!r} in {member!r}")
            intervals.append((lo, hi))
    return {sid: _normalize(iv) for sid, iv in out.items()}


def _normalize(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def format_mysql_gtid_set(gtid_set: dict[str, list[Interval]]) -> str:
    parts = []
    for sid in sorted(gtid_set):
        if not gtid_set[sid]:
            continue
        ranges = ":".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in gtid_set[sid])
        parts.append(f"{sid}:{ranges}")
    return ",".join(parts)


def add_mysql_gtid(gtid_set: str | None, gtid: str) -> str:
    """The executed set after the transaction `gtid` ('uuid:n') was applied."""
    sid, _, n = gtid.rpartition(":")
    parsed = parse_mysql_gtid_set(gtid_set)
    parsed.setdefault(sid.lower(), []).append((int(n), int(n)))
    parsed[sid.lower()] = _normalize(parsed[sid.lower()])
    return format_mysql_gtid_set(parsed)


def mysql_gtid_subset(a: str | None, b: str | None) -> bool:
    """True if every GTID of set a is also in set b."""
    pa, pb = parse_mysql_gtid_set(a), parse_mysql_gtid_set(b)
    for sid, intervals in pa.items():
        have = pb.get(sid, [])
        for lo, hi in intervals:
            if not any(blo <= lo and hi <= bhi for blo, bhi in have):
                return False
    return True
