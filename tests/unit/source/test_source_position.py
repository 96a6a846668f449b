"""SourcePosition ordering and serialization; GTID list/set helpers."""

from __future__ import annotations

import json

import pytest

from cdc_bridge.source.gtid import (MariadbGtid, add_mysql_gtid, advance_mariadb_gtid_list, format_mariadb_gtid_list,
                                    format_mysql_gtid_set, mariadb_position_available, mysql_gtid_subset,
                                    parse_mariadb_gtid_list, parse_mysql_gtid_set)
from cdc_bridge.source.position import SourcePosition, binlog_file_index

UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_B = "00000000-0000-0000-0000-00000000000b"


def test_order_by_file_number_then_offset():
    a = SourcePosition("0-1-5", "mysql-bin.000009", 900)
    b = SourcePosition("0-1-6", "mysql-bin.000010", 4)  # lexically smaller offset, later file
    c = SourcePosition("0-1-7", "mysql-bin.000010", 120)
    assert a < b < c and c > a and a <= a and c >= b
    assert sorted([c, a, b]) == [a, b, c]
    # numbered past 999999 the name grows a digit: still ordered by number, not by text
    assert SourcePosition(None, "mysql-bin.999999", 5) < SourcePosition(None, "mysql-bin.1000000", 4)


def test_file_index():
    assert binlog_file_index("mysql-bin.000042") == 42
    assert binlog_file_index("weird") == 0


def test_round_trip_through_json():
    p = SourcePosition("0-1-42,1-2-7", "mysql-bin.000003", 1155)
    assert SourcePosition.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    q = SourcePosition(None, "binlog.000001", 4)
    assert SourcePosition.from_dict(q.to_dict()) == q
    assert SourcePosition.from_dict({"binlog_file": "b.000001", "binlog_pos": "7"}).binlog_pos == 7
    assert str(p) == "0-1-42,1-2-7 (mysql-bin.000003:1155)"
    assert str(q) == "binlog.000001:4"
    assert hash(p) == hash(SourcePosition("0-1-42,1-2-7", "mysql-bin.000003", 1155))


# ------------------------------------------------------------------ MariaDB

def test_mariadb_gtid_parse_format():
    assert MariadbGtid.parse("0-1-42") == MariadbGtid(0, 1, 42)
    assert str(MariadbGtid(3, 20, 7)) == "3-20-7"
    for bad in ("0-1", "a-b-c", "0-1-2-3", "-1-1-1"):
        with pytest.raises(ValueError):
            MariadbGtid.parse(bad)


def test_mariadb_gtid_list_keeps_last_per_domain_sorted():
    parsed = parse_mariadb_gtid_list("1-7-3, 0-1-42\n")
    assert parsed == {0: MariadbGtid(0, 1, 42), 1: MariadbGtid(1, 7, 3)}
    assert format_mariadb_gtid_list(parsed) == "0-1-42,1-7-3"
    # a binlog state names several servers per domain: the highest seq is where the domain is
    assert parse_mariadb_gtid_list("0-1-10,0-2-12,0-3-11")[0] == MariadbGtid(0, 2, 12)
    assert parse_mariadb_gtid_list("") == {} and parse_mariadb_gtid_list(None) == {}


def test_mariadb_advance():
    assert advance_mariadb_gtid_list("0-1-41", "0-1-42") == "0-1-42"
    assert advance_mariadb_gtid_list("0-1-41,2-5-9", "1-3-1") == "0-1-41,1-3-1,2-5-9"
    assert advance_mariadb_gtid_list("", "0-1-1") == "0-1-1"


@pytest.mark.parametrize("wanted,first,state,ok", [
    ("0-1-20", "0-1-10", "0-1-30", True),      # inside the binlogs
    ("0-1-10", "0-1-10", "0-1-30", True),      # exactly at the start of the oldest file
    ("0-1-9", "0-1-10", "0-1-30", False),      # its successor was purged
    ("0-1-31", "0-1-10", "0-1-30", False),     # ahead of the server (diverged)
    ("0-1-30", "", "0-1-30", True),            # nothing purged, at the end
    ("", "", "0-1-30", True),                  # from the very beginning, nothing purged
    ("", "0-1-10", "0-1-30", False),           # from the beginning, but the beginning is gone
    ("0-1-20,1-1-5", "0-1-10", "0-1-30", False),  # a domain the server never had
    ("0-1-20", "0-1-10,1-2-4", "0-1-30,1-2-8", False),  # domain 1 would restart at a purged start
    ("0-1-20,1-2-6", "0-1-10,1-2-4", "0-1-30,1-2-8", True),
])
def test_mariadb_position_available(wanted, first, state, ok):
    assert mariadb_position_available(wanted, first, state) is ok


# ------------------------------------------------------------------ MySQL

def test_mysql_gtid_set_parse_normalize_format():
    s = parse_mysql_gtid_set(f"{UUID_A.upper()}:1-5:7:6,\n{UUID_B}:3")
    assert s == {UUID_A: [(1, 7)], UUID_B: [(3, 3)]}
    assert format_mysql_gtid_set(s) == f"{UUID_B}:3,{UUID_A}:1-7"
    with pytest.raises(ValueError):
        parse_mysql_gtid_set(f"{UUID_A}:tag:1-3")
    with pytest.raises(ValueError):
        parse_mysql_gtid_set(UUID_A)


def test_mysql_add_gtid_merges_intervals():
    s = add_mysql_gtid(f"{UUID_A}:1-5", f"{UUID_A}:6")
    assert s == f"{UUID_A}:1-6"
    s = add_mysql_gtid(s, f"{UUID_A}:8")
    assert s == f"{UUID_A}:1-6:8"
    s = add_mysql_gtid(s, f"{UUID_B}:1")
    assert s == f"{UUID_B}:1,{UUID_A}:1-6:8"
    assert add_mysql_gtid("", f"{UUID_A}:1") == f"{UUID_A}:1"


def test_mysql_subset():
    assert mysql_gtid_subset("", f"{UUID_A}:1-3")
    assert mysql_gtid_subset(f"{UUID_A}:2-3", f"{UUID_A}:1-3")
    assert not mysql_gtid_subset(f"{UUID_A}:2-4", f"{UUID_A}:1-3")
    assert not mysql_gtid_subset(f"{UUID_B}:1", f"{UUID_A}:1-3")
    assert mysql_gtid_subset(f"{UUID_A}:1-3:5", f"{UUID_A}:1-5")
