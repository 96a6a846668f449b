"""Row events read from their raw packets (BinlogSource._direct_rows) against the same packets parsed
by python-mysql-replication's own event classes, the path every other event takes: MariaDB's v1 and
MySQL's v2 row events (with extra data), inserts / updates / deletes, with and without a CRC32
checksum, more than 250 columns (a 3-byte column count), several rows per event.

tests/integration/test_source_stream.py reads a real binlog both ways and compares every transaction."""

from __future__ import annotations

import struct
import zlib
from types import SimpleNamespace

import pytest
from pymysql.protocol import MysqlPacket
from pymysqlreplication.constants import FIELD_TYPE as FT
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent
from pymysqlreplication.table import Table

from binlog_encoding import lp
from cdc_bridge.source.binlog import _HEADER, BinlogSource
from cdc_bridge.source.errors import SourceError
from cdc_bridge.source.values import ColumnSpec, TableDecoder

TID = 0x0102_0304_0506 & 0xFFFF_FFFF_FFFF   # all six table-id bytes in use

NARROW = [ColumnSpec(name="id", type=FT.LONGLONG), ColumnSpec(name="v", type=FT.VARCHAR, max_length=40, codec="utf-8")]
WIDE = [ColumnSpec(name=f"c{i}", type=FT.TINY) for i in range(300)]


def narrow_image(i: int, v: str | None) -> bytes:
    return (b"\x02" if v is None else b"\x00") + struct.pack("<q", i) + (b"" if v is None else lp(v.encode()))


def wide_image(i: int) -> bytes:
    return bytes(38) + bytes((i + k) % 128 for k in range(300))


def lenenc(n: int) -> bytes:
    return bytes([n]) if n < 251 else b"\xfc" + n.to_bytes(2, "little") if n < 1 << 16 else b"\xfd" + n.to_bytes(3, "little")


def row_packet(etype: int, ncols: int, images: list[bytes], *, v2: bool, extra: bytes = b"", checksum: bool,
               ts: int = 1_700_000_123, server_id: int = 7, log_pos: int = 4242) -> bytes:
    post = TID.to_bytes(6, "little") + b"\x01\x00" + ((len(extra) + 2).to_bytes(2, "little") + extra if v2 else b"")
    bitmap = b"\xff" * ((ncols + 7) // 8)
    bitmaps = bitmap * (2 if etype in (24, 31) else 1)
    body = post + lenenc(ncols) + bitmaps + b"".join(images)
    size = 19 + len(body) + (4 if checksum else 0)
    event = struct.pack("<IBIIIH", ts, etype, server_id, size, log_pos, 0) + body
    return b"\x00" + event + (zlib.crc32(event).to_bytes(4, "little") if checksum else b"")


def library_event(data: bytes, checksum: bool):
    ctl = SimpleNamespace(charset="utf8", _get_dbms=lambda: "mariadb")
    wrapper = BinLogPacketWrapper(
        MysqlPacket(data, "utf8"), {TID: Table(TID, "s", "t", [], primary_key="id")}, ctl, (10, 11, 0), checksum,
        {WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent}, None, None, None, None, True, False, False, False, False)
    assert wrapper.event is not None
    return wrapper.event


def source_with(decoder: TableDecoder) -> BinlogSource:
    src = BinlogSource.__new__(BinlogSource)
    src._decoder = lambda ev: decoder
    src.rows_read = 0
    return src


CASES = {
    "insert": ([narrow_image(1, "a"), narrow_image(2, None), narrow_image(3, "ü" * 13)], 1),
    "update": ([narrow_image(1, "a"), narrow_image(1, "b"), narrow_image(2, None), narrow_image(2, "c")], 2),
    "delete": ([narrow_image(5, "z")], 1),
}
TYPES = {"insert": (23, 30), "update": (24, 31), "delete": (25, 32)}


@pytest.mark.parametrize("checksum", [True, False], ids=["crc32", "no checksum"])
@pytest.mark.parametrize("version", ["v1", "v2", "v2 extra data"])
@pytest.mark.parametrize("op", list(CASES))
def test_direct_rows_equal_the_library_path(op, version, checksum):
    images, _ = CASES[op]
    etype = TYPES[op][version != "v1"]
    # partition ids, as MySQL writes them (an update has the source partition's too)
    extra = (b"\x01\x05\x00" + (b"\x03\x00" if op == "update" else b"")) if version == "v2 extra data" else b""
    data = row_packet(etype, 2, images, v2=version != "v1", extra=extra, checksum=checksum)
    decoder = TableDecoder("s.t", NARROW, None)
    src = source_with(decoder)
    via_library: list = []
    src._decode_rows(library_event(data, checksum), via_library)
    direct: list = []
    assert src._direct_rows(data, etype, decoder, len(data) - (4 if checksum else 0), direct) == TID
    assert direct == via_library and len(direct) == len(images) // CASES[op][1]
    assert [c.op for c in direct] == [op] * len(direct)
    assert src.rows_read == 2 * len(direct)


def test_more_than_250_columns():
    data = row_packet(23, 300, [wide_image(1), wide_image(2)], v2=False, checksum=True)
    decoder = TableDecoder("s.wide", WIDE, None)
    src = source_with(decoder)
    via_library: list = []
    src._decode_rows(library_event(data, True), via_library)
    direct: list = []
    src._direct_rows(data, 23, decoder, len(data) - 4, direct)
    assert direct == via_library and [c.after["c299"] for c in direct] == [(1 + 299) % 128, (2 + 299) % 128]


def test_the_header_fields_the_change_stream_describes():
    data = row_packet(23, 2, [narrow_image(1, "a")], v2=False, checksum=True, ts=1_700_000_999, server_id=42,
                      log_pos=9000)
    p = library_event(data, True).packet
    assert _HEADER.unpack_from(data, 1) == (p.timestamp, p.server_id, p.event_size, p.log_pos)


def test_a_packet_shorter_than_its_event_is_a_source_error():
    data = row_packet(23, 2, [narrow_image(1, "a")], v2=False, checksum=True)
    with pytest.raises(SourceError, match=r"^s\.t: a row event packet does not match its event size"):
        source_with(TableDecoder("s.t", NARROW, None))._direct_rows(data[:-1], 23, TableDecoder("s.t", NARROW, None),
                                                                      len(data) - 5, [])


def test_rows_that_overrun_the_event_are_a_source_error():
    data = row_packet(23, 2, [narrow_image(1, "a")], v2=False, checksum=True)
    decoder = TableDecoder("s.t", NARROW, None)
    with pytest.raises(SourceError, match=r"^s\.t: a row event"):
        source_with(decoder)._direct_rows(data, 23, decoder, len(data) - 6, [])   # the image cut by 2 bytes


def test_rows_of_a_table_without_decoder_are_skipped():
    data = row_packet(23, 2, [narrow_image(1, "a")], v2=False, checksum=True)
    changes: list = []
    assert source_with(None)._direct_rows(data, 23, None, len(data) - 4, changes) == TID and changes == []


def other_packet(etype: int, body: bytes, *, checksum: bool, ts: int = 1_700_000_321, server_id: int = 9,
                 log_pos: int = 777) -> bytes:
    size = 19 + len(body) + (4 if checksum else 0)
    event = struct.pack("<IBIIIH", ts, etype, server_id, size, log_pos, 0) + body
    return b"\x00" + event + (zlib.crc32(event).to_bytes(4, "little") if checksum else b"")


def library_other(data: bytes, checksum: bool, allowed: set):
    ctl = SimpleNamespace(charset="utf8", _get_dbms=lambda: "mariadb")
    wrapper = BinLogPacketWrapper(MysqlPacket(data, "utf8"), {}, ctl, (10, 11, 0), checksum, allowed,
                                  None, None, None, None, True, False, False, False, False)
    assert wrapper.event is not None
    return wrapper.event


@pytest.mark.parametrize("checksum", [True, False], ids=["crc32", "no checksum"])
def test_xid_and_mariadb_gtid_events_equal_the_library_path(checksum):
    from pymysqlreplication.event import MariadbGtidEvent, XidEvent

    from cdc_bridge.source.binlog import MARIADB_GTID_EVENT, XID_EVENT, _direct_event

    xid = other_packet(XID_EVENT, struct.pack("<Q", 123456789), checksum=checksum)
    lib = library_other(xid, checksum, {XidEvent})
    got = _direct_event(xid, XID_EVENT)
    assert (got.timestamp, got.log_pos) == (lib.timestamp, lib.packet.log_pos) == (1_700_000_321, 777)
    # seq_no, domain_id, flags (+ a commit id when FL_GROUP_COMMIT_ID (2) is set, as the server writes it)
    for seq_no, domain, flags, tail in [(42, 0, 0, b""), (2**63 + 5, 4_000_000_000, 3, b"\x07" * 8 + b"\0" * 6),
                                        (1, 7, 1, b"\0" * 6)]:
        gtid = other_packet(MARIADB_GTID_EVENT, struct.pack("<QIB", seq_no, domain, flags) + tail, checksum=checksum)
        lib = library_other(gtid, checksum, {MariadbGtidEvent})
        got = _direct_event(gtid, MARIADB_GTID_EVENT)
        assert (got.gtid, got.flags) == (lib.gtid, lib.flags) == (f"{domain}-9-{seq_no}", flags)
    assert _direct_event(other_packet(MARIADB_GTID_EVENT, b"\x01\x02", checksum=False), MARIADB_GTID_EVENT) is None
