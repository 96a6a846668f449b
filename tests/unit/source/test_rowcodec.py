"""The C row reader (_rowcodec.c) against the Python one (values.RowPlan.read) on the same bytes.

RowPlan.read is the reference: every test builds a NativeRowPlan, reads the same buffer with
`plan.read` (C) and `RowPlan.read(plan, ...)` (Python), and requires identical rows (keys in
order, values of the same type, floats bit for bit), zero-date lists and next offsets. The
encoders follow MySQL's binlog packing so the fast paths see the values a server writes;
random raw bytes check the out-of-range cases that the C code hands to the Python decoder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pymysqlreplication.constants import FIELD_TYPE as FT

from binlog_encoding import (DIG2BYTES, FSP_BYTES, decimal_size, enc_date, enc_datetime2, enc_decimal,
                             enc_timestamp2, lp, spec)
from cdc_bridge.source import values
from cdc_bridge.source.values import ColumnSpec, NativeRowPlan, RowPlan, _native_op

ROOT = Path(__file__).resolve().parents[3]


def test_extension_is_built_and_selected():
    """Fails when the optional build failed silently (setup.py: optional=True)."""
    from cdc_bridge.source import _rowcodec  # noqa: F401  (ImportError = not built)
    if os.environ.get("CDC_BRIDGE_NATIVE_ROWS") != "0":
        assert values.ROW_DECODER == "native"
        assert values.TableDecoder("t", [ColumnSpec("a", FT.LONG)], None).plan(b"\x01").__class__ is NativeRowPlan


@pytest.mark.parametrize("env,expected", [("0", "python"), ("1", "native"), (None, "native")])
def test_environment_selects_decoder(env, expected):
    environ = {k: v for k, v in os.environ.items() if k != "CDC_BRIDGE_NATIVE_ROWS"}
    if env is not None:
        environ["CDC_BRIDGE_NATIVE_ROWS"] = env
    code = ("from cdc_bridge.source import values as v; from pymysqlreplication.constants import FIELD_TYPE as FT;"
            "p = v.TableDecoder('t', [v.ColumnSpec('a', FT.LONG)], None).plan(b'\\x01');"
            "print(v.ROW_DECODER, type(p).__name__)")
    out = subprocess.run([sys.executable, "-c", code], env=environ, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [expected, "NativeRowPlan" if expected == "native" else "RowPlan"]


# ------------------------------------------------------------------ comparing C and Python


def same(a, b) -> bool:
    """Equal, of the same type all the way down, floats bit for bit (NaN, -0.0), dict keys in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def plan_of(specs: list[ColumnSpec], present: list[int] | None = None, needed: set[str] | None = None):
    return NativeRowPlan(specs, list(range(len(specs))) if present is None else present, needed)


def check_same(plan, buf: bytes, off: int = 0):
    """Both readers on buf; returns the (identical) result."""
    expected = RowPlan.read(plan, buf, off)
    got = plan.read(buf, off)
    assert same(got, expected), f"native {got!r} != python {expected!r} for {buf[off:].hex()}"
    return got


def check_values(spec: ColumnSpec, raws: list[bytes], op: str | None = None) -> None:
    """One column, one value per raw encoding: value, type and next offset identical.

    Each raw value is read from a buffer with a null bitmap before it and trailing bytes after
    it, so a decoder reading too little or too much shows in the offset.
    """
    plan = plan_of([spec])
    if op is not None:
        assert _native_op(spec, False)[0] == op  # the fast path is what is tested
    for raw in raws:
        buf = b"\x00" + raw + b"\x99\x98"
        row, zeros, off = check_same(plan, buf)
        assert off == 1 + len(raw)


def rnd_bytes(rnd: random.Random, n: int) -> bytes:
    return bytes(rnd.getrandbits(8) for _ in range(n))


# ------------------------------------------------------------------ fast paths, one value at a time

INTS = [  # type, unsigned, struct format, op
    (FT.SHORT, False, "<h", "i16"), (FT.SHORT, True, "<H", "u16"),
    (FT.LONG, False, "<i", "i32"), (FT.LONG, True, "<I", "u32"),
    (FT.LONGLONG, False, "<q", "i64"), (FT.LONGLONG, True, "<Q", "u64"),
]


def test_tiny_signed_unsigned_bool_every_byte():
    every = [bytes([b]) for b in range(256)]
    check_values(spec(FT.TINY), every, "i8")
    check_values(spec(FT.TINY, unsigned=True), every, "u8")
    check_values(spec(FT.TINY, is_bool=True), every, "bool")


@pytest.mark.parametrize("t,unsigned,fmt,op", INTS)
def test_integers(t, unsigned, fmt, op):
    rnd = random.Random(f"{t}{unsigned}")
    bits = struct.calcsize(fmt) * 8
    lo, hi = (0, 2 ** bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    edge = [lo, hi, 0, 1, -1 if lo else 2, lo + 1, hi - 1, 2 ** 31 - 1 if bits > 32 else hi // 2]
    vals = edge + [rnd.randint(lo, hi) for _ in range(3000)]
    check_values(spec(t, unsigned=unsigned), [struct.pack(fmt, v) for v in vals], op)


@pytest.mark.parametrize("unsigned", [False, True])
def test_int24(unsigned):
    rnd = random.Random(24)
    raws = [v.to_bytes(3, "little") for v in (0, 1, 0x7FFFFF, 0x800000, 0xFFFFFF, 0x800001)]
    raws += [rnd_bytes(rnd, 3) for _ in range(3000)]
    check_values(spec(FT.INT24, unsigned=unsigned), raws, "u24" if unsigned else "i24")


def test_unsigned_bigint_max_stays_exact():
    plan = plan_of([spec(FT.LONGLONG, unsigned=True)])
    row, _, _ = check_same(plan, b"\x00" + b"\xff" * 8)
    assert row["c"] == 18446744073709551615 and type(row["c"]) is int


def test_double():
    rnd = random.Random(5)
    edge = [0.0, -0.0, 1.5, -3.141592653589793, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308,
            2.2250738585072014e-308, 0.1]
    raws = [struct.pack("<d", v) for v in edge]
    raws += [b"\x01\x00\x00\x00\x00\x00\xf8\x7f", b"\xff" * 8]  # NaN payloads, -NaN
    raws += [rnd_bytes(rnd, 8) for _ in range(3000)]
    raws += [struct.pack("<d", rnd.uniform(-1e12, 1e12)) for _ in range(1000)]
    check_values(spec(FT.DOUBLE), raws, "f64")


DECIMALS = [(1, 0), (1, 1), (2, 1), (5, 5), (9, 0), (9, 9), (10, 0), (10, 2), (10, 10), (12, 2), (18, 0), (18, 9),
            (18, 18), (19, 0), (19, 4), (20, 6), (27, 9), (30, 30), (38, 10), (40, 20), (65, 0), (65, 30), (65, 65)]


def random_decimal(rnd: random.Random, precision: int, scale: int) -> str:
    intg = precision - scale
    ip = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, intg))) or "0"
    fp = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(0, scale)))
    text = ip + ("." + fp if fp else "")
    return ("-" if rnd.random() < 0.5 else "") + text


def decimal_group_edges(precision: int, scale: int) -> list[bytes]:
    """Each digit group at its largest valid value and at the first invalid one, both signs."""
    intg0, intg0x = divmod(precision - scale, 9)
    frac0, frac0x = divmod(scale, 9)
    segments = ([intg0x] if intg0x else []) + [9] * (intg0 + frac0) + ([frac0x] if frac0x else [])
    out = []
    for k, digits in enumerate(segments):
        for v in (10 ** digits - 1, 10 ** digits):
            nbytes = DIG2BYTES[digits] if digits < 9 else 4
            if v >= 256 ** nbytes:
                continue
            raw = bytearray()
            for j, d in enumerate(segments):
                raw += (v if j == k else 0).to_bytes(DIG2BYTES[d] if d < 9 else 4, "big")
            for negative in (False, True):
                signed = bytearray(b ^ 0xFF for b in raw) if negative else bytearray(raw)
                signed[0] ^= 0x80
                out.append(bytes(signed))
    return out


@pytest.mark.parametrize("precision,scale", DECIMALS)
def test_decimal(precision, scale):
    rnd = random.Random(precision * 100 + scale)
    intg = precision - scale
    nines = ("9" * intg or "0") + ("." + "9" * scale if scale else "")
    texts = ["0", "-0", nines, "-" + nines]
    if scale:
        texts += ["0." + "0" * (scale - 1) + "1", "-0." + "0" * (scale - 1) + "1", "-0.5"]
    if intg:
        texts += ["1", "-1", "10", "-" + "1" + "0" * (intg - 1)]
    texts += [random_decimal(rnd, precision, scale) for _ in range(1500)]
    raws = [enc_decimal(t, precision, scale) for t in texts]
    raws += [b"\x80" + b"\x00" * (len(raws[0]) - 1), b"\x7f" + b"\xff" * (len(raws[0]) - 1)]  # 0 and "-0"
    # garbled groups (> 999999999, a lead byte beyond its digits): the C code asks the Python decoder
    raws += [rnd_bytes(rnd, decimal_size(precision, scale)) for _ in range(500)]
    raws += decimal_group_edges(precision, scale)
    s = spec(FT.NEWDECIMAL, precision=precision, scale=scale)
    check_values(s, raws, "decimal")
    for t in texts[:4]:  # and the text is the exact one, sign only when nonzero
        value = plan_of([s]).read(b"\x00" + enc_decimal(t, precision, scale), 0)[0]["c"]
        assert Decimal(value) == Decimal(t) and not (value.startswith("-") and Decimal(value) == 0)


TEXT_SPECS = [  # (spec, prefix)
    (spec(FT.VARCHAR, max_length=40, codec="utf-8"), 1),
    (spec(FT.VARCHAR, max_length=1200, codec="utf-8"), 2),
    (spec(FT.VAR_STRING, max_length=255, codec="utf-8"), 1),
    (spec(FT.STRING, max_length=12, codec="utf-8"), 1),
    (spec(FT.STRING, max_length=1020, codec="utf-8"), 2),
    (spec(FT.BLOB, length_size=1, codec="utf-8"), 1),
    (spec(FT.BLOB, length_size=2, codec="utf-8"), 2),
    (spec(FT.BLOB, length_size=3, codec="utf-8"), 3),
    (spec(FT.BLOB, length_size=4, codec="utf-8"), 4),
]


def random_text_bytes(rnd: random.Random, limit: int) -> bytes:
    kind = rnd.random()
    n = rnd.randint(0, min(limit, 60))
    if kind < 0.3:
        return "".join(chr(rnd.randint(32, 126)) for _ in range(n)).encode()
    if kind < 0.6:
        alphabet = "aé€😀ß中\u0000\u07ff\uffff\U0010ffff"
        return "".join(rnd.choice(alphabet) for _ in range(n // 2)).encode()[:limit]
    if kind < 0.8:  # invalid UTF-8: cut sequences, stray continuation bytes, overlong, surrogates
        pieces = [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xbf", b"\xc0\x80", b"\xed\xa0\x80",
                  b"\xf4\x90\x80\x80", b"\xff", b"a", "é".encode()]
        return b"".join(rnd.choice(pieces) for _ in range(n // 2))[:limit]
    return rnd_bytes(rnd, n)[:limit]


@pytest.mark.parametrize("s,prefix", TEXT_SPECS, ids=[f"{s.type}-{p}" for s, p in TEXT_SPECS])
def test_utf8_text(s, prefix):
    rnd = random.Random(f"{s.type}{prefix}")
    limit = 2 ** (8 * prefix) - 1
    datas = [b"", b"a", "😀".encode(), b"\xff", b"abc\xe2\x82", b"\x00"]
    datas += [random_text_bytes(rnd, limit) for _ in range(2000)]
    if prefix >= 2:
        datas += [("€" * 400).encode()[:1000], b"x" * 255, b"y" * 256]
    if prefix >= 3:
        datas += [b"z" * 70000]
    check_values(s, [lp(d, prefix) for d in datas], "utf8")


@pytest.mark.parametrize("fsp", range(7))
def test_datetime2(fsp):
    rnd = random.Random(fsp)
    scale = 10 ** (6 - 2 * ((fsp + 1) // 2)) if fsp else 1
    raws = [enc_datetime2(1000, 1, 1, 0, 0, 0, 0, fsp), enc_datetime2(9999, 12, 31, 23, 59, 59, 999999, fsp),
            enc_datetime2(2024, 2, 29, 12, 30, 45, 123456, fsp)]
    zeros = [(0, 0, 0), (0, 1, 1), (2024, 0, 10), (2024, 5, 0), (0, 0, 5), (0, 12, 0), (1999, 0, 0)]
    raws += [enc_datetime2(y, m, d, 1, 2, 3, 500000, fsp) for y, m, d in zeros]  # zero and partly-zero dates
    for _ in range(2000):
        micro = rnd.randint(0, 999999) // scale * scale if fsp else 0
        raws.append(enc_datetime2(rnd.randint(0, 9999), rnd.randint(0, 12), rnd.randint(0, 31), rnd.randint(0, 23),
                                  rnd.randint(0, 59), rnd.randint(0, 59), micro, fsp))
    # anything else: out-of-range fields, fractions > 999999, below the sign bit (Python's decoder)
    raws += [rnd_bytes(rnd, 5 + FSP_BYTES[fsp]) for _ in range(2000)]
    check_values(spec(FT.DATETIME2, fsp=fsp), raws, "datetime2")


@pytest.mark.parametrize("fsp", range(7))
def test_timestamp2(fsp):
    rnd = random.Random(100 + fsp)
    scale = 10 ** (6 - 2 * ((fsp + 1) // 2)) if fsp else 1
    secs = [0, 1, 59, 86399, 86400, 951782400, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 4107542399, 4107542400]
    raws = [enc_timestamp2(s, 0, fsp) for s in secs]
    raws += [enc_timestamp2(s, 10 ** 6 - scale if fsp else 0, fsp) for s in secs]  # 0 seconds + fraction: not zero
    raws += [enc_timestamp2(rnd.randint(0, 2 ** 32 - 1), rnd.randint(0, 999999) // scale * scale if fsp else 0, fsp)
             for _ in range(3000)]
    raws += [rnd_bytes(rnd, 4 + FSP_BYTES[fsp]) for _ in range(1000)]
    check_values(spec(FT.TIMESTAMP2, fsp=fsp), raws, "timestamp2")


@pytest.mark.parametrize("t", [FT.DATE, FT.NEWDATE])
def test_date(t):
    rnd = random.Random(t)
    raws = [enc_date(y, m, d) for y, m, d in [(0, 0, 0), (0, 1, 1), (2024, 0, 1), (2024, 1, 0), (1, 1, 1),
                                              (9999, 12, 31), (1000, 1, 1), (2024, 2, 29)]]
    raws += [rnd_bytes(rnd, 3) for _ in range(5000)]  # every field combination, months 13-15 included
    check_values(spec(t), raws, "date")


@pytest.mark.parametrize("size", [1, 2])
def test_enum(size):
    names = tuple(f"v{i}" for i in range(300 if size == 2 else 5))
    s = spec(FT.ENUM, size=size, enum_values=names)
    raws = [i.to_bytes(size, "little") for i in range(min(2 ** (8 * size), 400))]  # 0, valid, out of range
    raws += [b"\xff" * size]
    check_values(s, raws, "enum")
    assert plan_of([s]).read(b"\x00" + bytes(size), 0)[0] == {"c": ""}


def test_every_fast_path_and_fallback_is_classified():
    """Classification mirrors decoder_for: fallback types are "call" with their size or prefix."""
    fixed = [spec(FT.FLOAT), spec(FT.TIME2, fsp=3), spec(FT.YEAR), spec(FT.BIT, bits=9),
             spec(FT.SET, size=1, set_values=("a",)), spec(FT.DATETIME), spec(FT.TIMESTAMP), spec(FT.TIME)]
    for s in fixed:
        assert _native_op(s, False)[:3] == ("call", values._fixed_size(s), 0)
    prefixed = [(spec(FT.VARCHAR, max_length=10, codec="cp1252"), 1), (spec(FT.VARCHAR, max_length=300), 2),
                (spec(FT.STRING, max_length=4), 1), (spec(FT.BLOB, length_size=4, codec="utf-8", is_json_text=True), 4),
                (spec(FT.JSON, length_size=4), 4), (spec(FT.GEOMETRY, length_size=4), 4)]
    for s, prefix in prefixed:
        assert _native_op(s, False)[:3] == ("call", 0, prefix)
    assert _native_op(spec(FT.VARCHAR, max_length=10), True)[:2] == ("skip_var", 1)
    assert _native_op(spec(FT.BLOB, length_size=3, codec="utf-8"), True)[:2] == ("skip_var", 3)
    assert _native_op(spec(FT.NEWDECIMAL, precision=12, scale=2), True)[:2] == ("skip_fixed", 6)
    assert _native_op(spec(FT.TIMESTAMP2, fsp=6), True)[:2] == ("skip_fixed", 7)


# ------------------------------------------------------------------ whole rows


def _fallback_and_fast_specs() -> list[ColumnSpec]:
    """One spec per decoder shape: fast paths, Python fallbacks, zero-capable types."""
    out = [
        spec(FT.TINY), spec(FT.TINY, unsigned=True), spec(FT.TINY, is_bool=True), spec(FT.SHORT),
        spec(FT.SHORT, unsigned=True), spec(FT.INT24), spec(FT.INT24, unsigned=True), spec(FT.LONG),
        spec(FT.LONG, unsigned=True), spec(FT.LONGLONG), spec(FT.LONGLONG, unsigned=True), spec(FT.DOUBLE),
        spec(FT.NEWDECIMAL, precision=12, scale=2), spec(FT.NEWDECIMAL, precision=65, scale=30),
        spec(FT.NEWDECIMAL, precision=10, scale=0), spec(FT.NEWDECIMAL, precision=4, scale=4),
        spec(FT.VARCHAR, max_length=40, codec="utf-8"), spec(FT.VARCHAR, max_length=400, codec="utf-8"),
        spec(FT.STRING, max_length=3, codec="utf-8"), spec(FT.BLOB, length_size=2, codec="utf-8"),
        spec(FT.BLOB, length_size=4, codec="utf-8"), spec(FT.BLOB, length_size=3, codec="utf-8"),
        spec(FT.DATE), spec(FT.NEWDATE), spec(FT.ENUM, size=1, enum_values=("a", "b", "c")),
        spec(FT.ENUM, size=2, enum_values=tuple(f"e{i}" for i in range(260))),
        # Python fallbacks
        spec(FT.FLOAT), spec(FT.YEAR), spec(FT.BIT, bits=13), spec(FT.SET, size=1, set_values=("x", "y", "z")),
        spec(FT.DATETIME), spec(FT.TIMESTAMP), spec(FT.TIME), spec(FT.VARCHAR, max_length=20, codec="cp1252"),
        spec(FT.VARCHAR, max_length=20), spec(FT.STRING, max_length=6), spec(FT.GEOMETRY, length_size=4),
        spec(FT.BLOB, length_size=4, codec="utf-8", is_json_text=True), spec(FT.JSON, length_size=4),
        spec(FT.BLOB, length_size=2, codec="utf-16-be"),
    ]
    out += [spec(FT.DATETIME2, fsp=f) for f in range(7)] + [spec(FT.TIMESTAMP2, fsp=f) for f in range(7)]
    out += [spec(FT.TIME2, fsp=f) for f in range(7)]
    return out


def random_value(rnd: random.Random, s: ColumnSpec) -> bytes:
    """A value as the server writes it (random bytes where every byte pattern is one)."""
    t = s.type
    if t == FT.NEWDECIMAL:
        if rnd.random() < 0.05:
            return rnd_bytes(rnd, decimal_size(s.precision, s.scale))
        return enc_decimal(random_decimal(rnd, s.precision, s.scale), s.precision, s.scale)
    if t == FT.DATETIME2:
        if rnd.random() < 0.1:
            return enc_datetime2(0, 0, 0, 0, 0, 0, 0, s.fsp)
        return enc_datetime2(rnd.randint(0, 9999), rnd.randint(0, 12), rnd.randint(0, 31), rnd.randint(0, 23),
                             rnd.randint(0, 59), rnd.randint(0, 59), rnd.randint(0, 999999), s.fsp)
    if t == FT.TIMESTAMP2:
        return enc_timestamp2(rnd.choice([0, rnd.randint(0, 2 ** 32 - 1)]), rnd.choice([0, rnd.randint(0, 999999)]),
                              s.fsp)
    if t in (FT.DATE, FT.NEWDATE):
        return enc_date(rnd.randint(0, 9999), rnd.randint(0, 12), rnd.randint(0, 31))
    if t == FT.ENUM:
        return rnd.randint(0, len(s.enum_values) + 2).to_bytes(s.size, "little")
    if t == FT.JSON:
        return lp(rnd.choice([b"", b"\x04\x01", b"\x04\x02", b"\x04\x00", b"\x05\x07\x00", b"\x0c\x03abc"]), 4)
    if t == FT.YEAR:
        return bytes([rnd.choice([0, rnd.randint(1, 255)])])
    if t == FT.DATETIME:
        return struct.pack("<Q", rnd.choice([0, 20240229123456, 19991231235959, rnd.getrandbits(50)]))
    if s.is_json_text:
        return lp(rnd.choice([b'{"a": [1, 2.5, null]}', b"[]", b"not json", b'"\xff"', b""]), s.length_size)
    size = values._fixed_size(s)
    if size is not None:
        return rnd_bytes(rnd, size)
    prefix = values._string_prefix(s) if t in (FT.VARCHAR, FT.STRING, FT.VAR_STRING) else s.length_size
    limit = s.max_length if t != FT.BLOB else 2 ** (8 * prefix) - 1
    data = random_text_bytes(rnd, limit)
    if s.codec == "utf-16-be":
        data = data[:len(data) // 2 * 2]
    return lp(data, prefix)


def random_plan(rnd: random.Random):
    pool = _fallback_and_fast_specs()
    n = rnd.randint(1, 30)
    specs = [dataclasses.replace(rnd.choice(pool), name=f"c{i}") for i in range(n)]
    present = sorted(rnd.sample(range(n), rnd.randint(1, n)))
    needed = None if rnd.random() < 0.3 else {s.name for s in specs if rnd.random() < 0.6}
    return specs, present, needed


def random_rows(rnd: random.Random, specs, present, count: int, null_rate: float) -> bytes:
    out = bytearray()
    for _ in range(count):
        nulls = bytearray((len(present) + 7) // 8)
        body = bytearray()
        for bit, i in enumerate(present):
            if rnd.random() < null_rate:
                nulls[bit >> 3] |= 1 << (bit & 7)
            else:
                body += random_value(rnd, specs[i])
        out += nulls + body
    return bytes(out)


def test_random_rows_native_equals_python():
    rnd = random.Random(20240229)
    kinds = set()
    for _ in range(300):
        specs, present, needed = random_plan(rnd)
        plan = NativeRowPlan(specs, present, needed)
        kinds.update(step[4] for step in plan.steps)
        buf = b"\xee" * 3 + random_rows(rnd, specs, present, 20, rnd.choice([0.0, 0.2, 0.9])) + b"\x00\x00\x00\x00"
        off = 3
        while off < len(buf) - 4:
            _, _, off = check_same(plan, buf, off)
        assert off == len(buf) - 4
    assert kinds == {values._KEEP, values._ZERO_OK, values._SKIP}


def test_nulls_skips_and_zero_dates_in_one_row():
    specs = [spec(FT.LONG, name="id"), spec(FT.DATETIME2, name="a"), spec(FT.DATE, name="b"),
             spec(FT.TIMESTAMP2, fsp=3, name="c"), spec(FT.VARCHAR, max_length=10, codec="utf-8", name="skipped"),
             spec(FT.DATETIME2, name="null_dt"), spec(FT.LONG, name="null_skipped"), spec(FT.YEAR, name="y")]
    plan = plan_of(specs, needed={"id", "a", "b", "c", "null_dt", "y"})
    buf = (bytes([0b0110_0000]) + struct.pack("<i", 7) + enc_datetime2(0, 0, 0, 0, 0, 0) + enc_date(2024, 0, 1)
           + enc_timestamp2(0, 0, 3) + lp(b"gone", 1) + b"\x00")
    row, zeros, off = check_same(plan, buf)
    assert row == {"id": 7, "a": None, "b": None, "c": None, "null_dt": None, "y": 0}   # YEAR 0000: 0
    assert list(row) == ["id", "a", "b", "c", "null_dt", "y"]
    assert zeros == ["a", "b", "c"] and off == len(buf)
    assert check_same(plan_of(specs[:1]), b"\x00\x05\x00\x00\x00") == ({"id": 5}, None, 5)


def test_more_than_eight_columns_use_the_later_bitmap_bytes():
    specs = [spec(FT.TINY, name=f"c{i}") for i in range(20)]
    plan = plan_of(specs)
    rnd = random.Random(3)
    for _ in range(200):
        check_same(plan, random_rows(rnd, specs, list(range(20)), 1, 0.5))


# ------------------------------------------------------------------ truncated and garbled buffers


def test_truncated_buffers_raise():
    rnd = random.Random(77)
    for _ in range(150):
        specs, present, needed = random_plan(rnd)
        plan = NativeRowPlan(specs, present, needed)
        full = random_rows(rnd, specs, present, 1, 0.1)
        assert plan.read(full, 0)[2] == len(full)
        for cut in range(len(full)):
            short = full[:cut]
            try:
                _, _, off = plan.read(short, 0)
            except (ValueError, IndexError):
                continue
            # the missing bytes belonged to NULL-free columns that were all read: impossible
            pytest.fail(f"read {cut} of {len(full)} bytes without an error (offset {off})")


def test_bad_offsets_and_buffers_raise():
    plan = plan_of([spec(FT.LONG, name="a"), spec(FT.VARCHAR, max_length=10, codec="utf-8", name="b")])
    buf = b"\x00" + b"\x01\x00\x00\x00" + lp(b"abc", 1)
    assert plan.read(buf, 0) == ({"a": 1, "b": "abc"}, None, len(buf))
    for off in (-1, len(buf), len(buf) + 10):
        with pytest.raises(ValueError):
            plan.read(buf, off)
    with pytest.raises(ValueError):  # length byte says 200, 3 bytes follow
        plan.read(b"\x00\x01\x00\x00\x00\xc8abc", 0)
    with pytest.raises(TypeError):
        plan.read("not bytes", 0)
    # a Python fallback never sees a value cut short (its slices would read less, or raise anything)
    json_plan = plan_of([spec(FT.JSON, length_size=4)])
    with pytest.raises(ValueError, match="truncated"):
        json_plan.read(b"\x00" + lp(b"\x04\x01", 4)[:-1], 0)
    assert plan.read(bytearray(buf), 0) == plan.read(memoryview(buf), 0) == plan.read(buf, 0)


def test_random_garbage_never_crashes():
    """Random bytes as rows: the result equals Python's, or the C reader raises."""
    rnd = random.Random(99)
    for _ in range(300):
        specs, present, needed = random_plan(rnd)
        plan = NativeRowPlan(specs, present, needed)
        buf = rnd_bytes(rnd, rnd.randint(0, 300))
        try:
            got = plan.read(buf, 0)
        except (ValueError, IndexError):
            continue
        except Exception as e:  # a Python fallback's own error on garbage (json, base64...) is fine
            assert not isinstance(e, (SystemError, MemoryError)), e
            continue
        assert same(got, RowPlan.read(plan, buf, 0))


def test_bad_steps_are_rejected():
    from cdc_bridge.source._rowcodec import RowReader
    dec = values.decoder_for(spec(FT.LONG))
    for step in [("c", dec, 1, 1, False, False, "i32", 0, 0, None),      # null bit outside the bitmap
                 ("c", dec, 0, 256, False, False, "i32", 0, 0, None),    # not a bit
                 ("c", dec, 0, 1, False, False, "nope", 0, 0, None),     # unknown op
                 ("c", dec, 0, 1, False, False, "utf8", 5, 0, None),     # prefix > 4
                 ("c", dec, 0, 1, False, False, "datetime2", 7, 0, None),
                 ("c", dec, 0, 1, False, False, "decimal", 66, 0, None),
                 ("c", dec, 0, 1, False, False, "enum", 1, 0, None)]:   # no table
        with pytest.raises((ValueError, TypeError)):
            RowReader(1, (step,), values.ZERO_DATE)
