"""Encoders of binlog row values for the decoder tests, following MySQL's own packing code
(decimal2bin, my_datetime_packed_to_binary, my_time_packed_to_binary), so decoders are checked
against the format, not against themselves. Shared by test_source_values.py (the Python
decoders) and test_rowcodec.py (the native reader)."""

from __future__ import annotations

import struct
from decimal import Decimal

from cdc_bridge.source.values import ColumnSpec

DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
FSP_BYTES = (0, 1, 1, 2, 2, 3, 3)


def enc_decimal(text: str, precision: int, scale: int) -> bytes:
    """decimal2bin; the sign as written ("-0.00" is a negative zero, which the decoders print as 0.00)."""
    d = Decimal(text)
    negative = d.is_signed()
    ip, _, fp = format(d.copy_abs(), "f").partition(".")
    intg = precision - scale
    ip = ip.lstrip("0").rjust(intg, "0")
    fp = fp.ljust(scale, "0")[:scale]
    intg0, intg0x = divmod(intg, 9)
    frac0, frac0x = divmod(scale, 9)
    out = bytearray()
    if intg0x:
        out += int(ip[:intg0x]).to_bytes(DIG2BYTES[intg0x], "big")
    for k in range(intg0):
        out += int(ip[intg0x + 9 * k: intg0x + 9 * k + 9]).to_bytes(4, "big")
    for k in range(frac0):
        out += int(fp[9 * k: 9 * k + 9]).to_bytes(4, "big")
    if frac0x:
        out += int(fp[frac0 * 9:]).to_bytes(DIG2BYTES[frac0x], "big")
    if negative:
        out = bytearray(b ^ 0xFF for b in out)
    out[0] ^= 0x80
    return bytes(out)


def decimal_size(precision: int, scale: int) -> int:
    intg0, intg0x = divmod(precision - scale, 9)
    frac0, frac0x = divmod(scale, 9)
    return DIG2BYTES[intg0x] + (intg0 + frac0) * 4 + DIG2BYTES[frac0x]


def enc_frac(micro: int, fsp: int) -> bytes:
    n = FSP_BYTES[fsp]
    return (micro // (10 ** (6 - 2 * ((fsp + 1) // 2)))).to_bytes(n, "big") if n else b""


def enc_datetime2(y, mo, d, h, mi, s, micro=0, fsp=0) -> bytes:
    ymd = ((y * 13 + mo) << 5) | d
    hms = (h << 12) | (mi << 6) | s
    return ((ymd << 17 | hms) + 0x8000000000).to_bytes(5, "big") + enc_frac(micro, fsp)


def enc_timestamp2(seconds: int, micro: int = 0, fsp: int = 0) -> bytes:
    return seconds.to_bytes(4, "big") + enc_frac(micro, fsp)


def enc_time2(negative: bool, h: int, mi: int, s: int, micro: int, fsp: int) -> bytes:
    """my_time_packed_to_binary: C truncating % for the fraction, arithmetic >> for the int part."""
    nr = ((h << 12 | mi << 6 | s) << 24) + micro
    if negative:
        nr = -nr
    if fsp >= 5:
        return (nr + 0x800000000000).to_bytes(6, "big")
    intpart = nr >> 24
    frac = (abs(nr) % (1 << 24)) * (-1 if nr < 0 else 1)
    head = (intpart + 0x800000).to_bytes(3, "big")
    if fsp == 0:
        return head
    if fsp <= 2:
        return head + struct.pack("b", int(frac / 10000))
    return head + struct.pack(">h", int(frac / 100))


def enc_date(y, m, d) -> bytes:
    return (d | m << 5 | y << 9).to_bytes(3, "little")


def lp(data: bytes, prefix: int = 1) -> bytes:
    """A length-prefixed value (prefix = bytes of the little-endian length)."""
    return len(data).to_bytes(prefix, "little") + data


def spec(t, **kw) -> ColumnSpec:
    return ColumnSpec(name=kw.pop("name", "c"), type=t, **kw)
