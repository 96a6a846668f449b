"""A row image the table map does not describe ends the stream with a SourceError naming the
table, with the native row reader (its bounds checks raise ValueError) and with the Python one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pymysqlreplication.constants import FIELD_TYPE as FT
from pymysqlreplication.row_event import WriteRowsEvent

from cdc_bridge.source.binlog import BinlogSource
from cdc_bridge.source.errors import SourceError
from cdc_bridge.source.values import ColumnSpec, RowPlan, TableDecoder


def write_event(buf: bytes) -> WriteRowsEvent:
    ev = WriteRowsEvent.__new__(WriteRowsEvent)
    ev.packet = SimpleNamespace(packet=SimpleNamespace(_data=buf, _position=0), read_bytes=0)
    ev.event_size = len(buf)
    ev.columns_present_bitmap = b"\x01"
    return ev


def source_with(decoder: TableDecoder) -> BinlogSource:
    src = BinlogSource.__new__(BinlogSource)
    src._decoder = lambda ev: decoder
    src.rows_read = 0
    return src


@pytest.mark.parametrize("python_reader", [False, True], ids=["selected reader", "python reader"])
@pytest.mark.parametrize("buf", [b"\x00\x0aabc", b"\x00"], ids=["value cut short", "value missing"])
def test_truncated_row_image_is_a_source_error(monkeypatch, buf, python_reader):
    decoder = TableDecoder("shop.orders", [ColumnSpec(name="note", type=FT.VARCHAR, max_length=40, codec="utf-8")],
                           None)
    if python_reader:
        monkeypatch.setattr(TableDecoder, "plan", lambda self, bitmap: RowPlan(self.specs, [0], self.needed))
    with pytest.raises(SourceError, match=r"^shop\.orders: a row event"):
        source_with(decoder)._decode_rows(write_event(buf), [])


def test_a_good_row_image_decodes():
    decoder = TableDecoder("shop.orders", [ColumnSpec(name="note", type=FT.VARCHAR, max_length=40, codec="utf-8")],
                           None)
    changes: list = []
    source_with(decoder)._decode_rows(write_event(b"\x00\x03abc"), changes)
    assert [(c.table, c.op, c.after) for c in changes] == [("shop.orders", "insert", {"note": "abc"})]
