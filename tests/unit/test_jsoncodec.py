"""cdc_bridge.jsoncodec: orjson first, the stdlib for what orjson refuses.

The reference is what the code wrote before (and still writes on the fallback path):
json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") and json.loads.
dumps() gives those bytes except for the documented differences, which apply only where orjson
writes the whole value: floats with 1e-9 <= |x| < 1e-4 in orjson's format (the same float when
read back), NaN / +-Infinity as null, uuid.UUID and enum.Enum values as their string / value.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import math
import random
import struct
import uuid

import orjson
import pytest

from cdc_bridge import jsoncodec
from cdc_bridge.jsoncodec import dumps, loads


def ref_dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def outcome(fn, arg):
    """(value, None) or (None, (exception type, message))."""
    try:
        return fn(arg), None
    except Exception as e:  # noqa: BLE001
        return None, (type(e), str(e))


def _tiny(f):
    """A float orjson writes in its own format (1e-05 -> 0.00001), not repr()'s."""
    return 1e-9 <= abs(f) < 1e-4


def _walk(v):
    """v and everything inside it, dict keys included."""
    yield v
    if isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _walk(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _walk(x)


def _orjson_refuses(v):
    """Holds an int beyond orjson's 64 bits or a non-str dict key: the whole value takes the stdlib."""
    for x in _walk(v):
        if type(x) is int and not -(2**63) <= x < 2**64:
            return True
        if isinstance(x, dict) and any(type(k) is not str for k in x):
            return True
    return False


def _differs(v):
    """Holds a float that orjson writes differently from json.dumps: NaN, +-Infinity, or a tiny one."""
    return any(type(x) is float and (not math.isfinite(x) or _tiny(x)) for x in _walk(v))


def _nulled(v):
    """v as orjson writes it, read back: NaN / +-Infinity -> None (tuples -> lists)."""
    if isinstance(v, dict):
        return {k: _nulled(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nulled(x) for x in v]
    if type(v) is float and not math.isfinite(v):
        return None
    return v


ROUND_TRIP = [
    None, True, False, 0, -1, 1, "", "a", "é ü ß", "emoji 😀👍🏽 🇩🇪", "中文", "\u2028\u2029\ufeff\x7f",
    "quote \" backslash \\ slash / controls \x00\x01\x08\t\n\x0c\r\x1f",
    2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**40, -(10**40),
    0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 1e-05, 2.5e-07, 1e-09, 1e-10, 0.0001, 1e+16, 1e16 - 2, 1e22, 1.5e300,
    5e-324, 2.2250738585072014e-308, 1.7976931348623157e+308,
    [], {}, [1, "x", None, 1.25, True], {"k": "v"},
    {"order_id": 11, "status": "pending", "total": "377.74", "lines": [
        {"line_id": 23, "sku": "SKU-0379", "quantity": 2, "unit_price": "522.53", "note": "über 😀"},
        {"line_id": 24, "sku": "SKU-0201", "quantity": 1, "unit_price": "5.00", "weight": 0.25}]},
    {"deep": [[[[{"a": [{"b": {"c": [1, 2, {"d": None}]}}]}]]]], "big": 2**70, "neg": -(2**63) - 1},
    {"": "empty key", "ключ": "значение", "k😀": ["v😀"]},
    {"tiny": [1e-05, -2.5e-07], "ok": 0.5},                       # orjson's float format
    {"tiny": [1e-05, -2.5e-07], "big": 2**64},                    # the stdlib's: orjson refuses the big int
]


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_round_trip_and_stdlib_bytes(value):
    raw = dumps(value)
    assert type(raw) is bytes
    if _differs(value) and not _orjson_refuses(value):
        assert raw == orjson.dumps(value) != ref_dumps(value)    # tiny floats: orjson's format
    else:
        assert raw == ref_dumps(value)                # byte for byte what the stdlib writes
    back = loads(raw)
    assert back == value and type(back) is type(value)
    assert back == json.loads(raw)
    if isinstance(value, float):
        assert math.copysign(1.0, back) == math.copysign(1.0, value)    # -0.0 stays -0.0


def test_big_ints_stay_exact_ints():
    for n in (2**64, -(2**63) - 1, 2**64 - 1, -(2**63), -9999999999999999999, 10**19, 123456789012345678901234567890):
        raw = dumps({"n": n, "l": [n]})
        assert raw == ref_dumps({"n": n, "l": [n]})
        back = loads(raw)
        assert back == {"n": n, "l": [n]} and type(back["n"]) is int and type(back["l"][0]) is int


def test_tuples_are_arrays():
    assert dumps((1, ("a", 2.5), {"t": (None,)})) == b'[1,["a",2.5],{"t":[null]}]'


def test_non_ascii_is_kept_as_utf8():
    assert dumps({"s": "é😀"}) == '{"s":"é😀"}'.encode("utf-8")


def test_every_bmp_character_and_some_astral_ones_are_escaped_like_the_stdlib():
    chars = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF)
    chars += "".join(chr(c) for c in range(0x10000, 0x110000, 997)) + "\U0010ffff"
    for i in range(0, len(chars), 4096):
        s = chars[i:i + 4096]
        assert dumps(s) == ref_dumps(s)
        assert dumps({s: [s]}) == ref_dumps({s: [s]})
        assert loads(dumps(s)) == s


def _random_doubles(n, seed=7):
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        f = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(f):
            out.append(f)
    return out


def _around_powers_of_ten():
    out = []
    for e in range(-325, 309):
        try:
            x = float(f"1e{e}")
        except OverflowError:
            continue
        for v in (x, math.nextafter(x, 0.0), math.nextafter(x, math.inf), 1.5 * x, 9.999999999999999 * x):
            if math.isfinite(v):
                out.extend((v, -v))
    return out


def test_floats_are_written_as_repr_except_tiny_ones_and_read_back_identical():
    # dumps() writes repr()'s bytes for every finite float except 1e-9 <= |x| < 1e-4, which get orjson's
    # format (1e-05 -> 0.00001, 2.5e-07 -> 2.5e-7): other bytes than json.dumps, the identical float.
    floats = _random_doubles(20000) + _around_powers_of_ten()
    floats += [round(random.Random(3).uniform(-1e6, 1e6), d) for d in range(12) for _ in range(200)]
    floats += [1e-9, math.nextafter(1e-9, 0.0), 1e-4, math.nextafter(1e-4, 0.0), 1.5212603486793025e-05]
    tiny = 0
    for f in floats:
        raw = dumps(f)
        if _tiny(f):
            tiny += 1
            assert raw == orjson.dumps(f) != repr(f).encode(), f
        else:
            assert raw == repr(f).encode(), f
        back = loads(raw)
        assert type(back) is float and back == f and math.copysign(1.0, back) == math.copysign(1.0, f), f
        assert json.loads(raw) == f                  # any JSON reader gets the same float
    assert tiny > 100
    raw = dumps(floats)
    assert raw == b"[" + b",".join(dumps(f) for f in floats) + b"]"
    assert repr(loads(raw)) == repr(floats)


@pytest.mark.parametrize("f, raw", [
    (1e-05, b"0.00001"), (-1e-05, b"-0.00001"), (2.5e-07, b"2.5e-7"), (1e-09, b"1e-9"), (-3e-06, b"-3e-6"),
    (1.5212603486793025e-05, b"0.000015212603486793025"), (9.999999999999999e-05, b"0.00009999999999999999"),
    (1e-4, b"0.0001"), (9.999999999999999e-10, b"9.999999999999999e-10"), (1e-10, b"1e-10"),
], ids=repr)
def test_tiny_float_bytes(f, raw):
    assert dumps(f) == raw
    assert loads(raw) == f and float(raw) == f
    assert (raw == ref_dumps(f)) is not _tiny(f)      # json.dumps wrote 1e-05, 2.5e-07, 1e-09 ...


def test_orjson_float_format_differs_from_repr_only_for_tiny_floats():
    """The documented difference, pinned on orjson itself: an orjson upgrade that changes it fails."""
    assert orjson.dumps(1e-05) == b"0.00001" and ref_dumps(1e-05) == b"1e-05"
    assert orjson.dumps(2.5e-07) == b"2.5e-7" and ref_dumps(2.5e-07) == b"2.5e-07"
    for f in _random_doubles(20000, seed=11) + _around_powers_of_ten():
        if not _tiny(f):
            assert orjson.dumps(f) == repr(f).encode(), f
        assert orjson.loads(orjson.dumps(f)) == f
    assert orjson.dumps(float("nan")) == orjson.dumps(float("-inf")) == b"null"


# ------------------------------------------------------------------ what orjson refuses: the stdlib's bytes


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


class Kind(str, enum.Enum):
    X = "x"


@pytest.mark.parametrize("value", [
    {1: "a", None: "b", True: "c", 1.5: "d"}, {"nested": {2: [1]}}, {"nan key": {float("nan"): 1}},
    {Name("k"): Name("v")}, [Name("x")], Color.RED, {"c": Color.RED}, collections.OrderedDict(b=1, a=2),
    {"od": collections.OrderedDict(z=[1])}, [[[[[[[[[[]]]]]]]]]] * 3, Kind.X, {"k": [Kind.X]},
    {"big": 2**64, "nan": float("nan"), "tiny": 1e-05},
], ids=repr)
def test_subclasses_and_non_str_keys_take_the_stdlib(value):
    raw = dumps(value)
    assert raw == ref_dumps(value)


@pytest.mark.parametrize("value, raw", [
    (float("nan"), b"null"), (float("inf"), b"null"), (float("-inf"), b"null"), ([1.0, float("nan")], b"[1.0,null]"),
    ({"a": {"b": [float("-inf")]}}, b'{"a":{"b":[null]}}'),
], ids=repr)
def test_nan_and_infinity_are_written_as_null(value, raw):
    assert dumps(value) == raw
    assert b"NaN" in ref_dumps(value) or b"Infinity" in ref_dumps(value)     # what json.dumps wrote
    assert loads(raw) == _nulled(value)


def test_nan_and_infinity_read_back():
    value = {"n": float("nan"), "i": float("inf"), "m": float("-inf"), "ok": None}
    raw = dumps(value)
    assert raw == b'{"n":null,"i":null,"m":null,"ok":null}'
    assert loads(raw) == json.loads(raw) == {"n": None, "i": None, "m": None, "ok": None}
    # what json.dumps wrote (earlier versions, state records) still reads as NaN / Infinity
    old = ref_dumps(value)
    assert old == b'{"n":NaN,"i":Infinity,"m":-Infinity,"ok":null}'
    back = loads(old)
    assert math.isnan(back["n"]) and back["i"] == math.inf and back["m"] == -math.inf and back["ok"] is None
    # a value orjson refuses (a big int) takes the stdlib as a whole: NaN / Infinity tokens as before
    mixed = {"n": float("nan"), "big": 2**64}
    assert dumps(mixed) == b'{"n":NaN,"big":18446744073709551616}'
    assert math.isnan(loads(dumps(mixed))["n"])


def test_deeper_than_orjson_allows_takes_the_stdlib():
    deep: list = []
    cur = deep
    for _ in range(400):
        cur.append([])
        cur = cur[0]
    cur.append({"x": 1})
    raw = dumps(deep)
    assert raw == ref_dumps(deep)
    assert loads(raw) == deep


@dataclasses.dataclass
class Point:
    x: int


class Plain(enum.Enum):
    A = 1


class Odd(enum.Enum):
    D = decimal.Decimal("1")


U5 = uuid.UUID(int=5)
U5_JSON = b'"00000000-0000-0000-0000-000000000005"'


@pytest.mark.parametrize("value, raw", [
    (U5, U5_JSON), ([U5], b"[" + U5_JSON + b"]"), ({"u": U5, "n": 1}, b'{"u":' + U5_JSON + b',"n":1}'),
    (Plain.A, b"1"), ({"e": Plain.A}, b'{"e":1}'), ([Plain.A, U5], b"[1," + U5_JSON + b"]"),
], ids=repr)
def test_uuid_and_enum_values_are_serialized(value, raw):
    assert dumps(value) == raw
    with pytest.raises(TypeError, match="is not JSON serializable"):
        ref_dumps(value)                              # json.dumps refused them
    assert loads(raw) == json.loads(raw)


@pytest.mark.parametrize("value", [
    decimal.Decimal("1.5"), {"d": decimal.Decimal("1")}, Odd.D, {"e": Odd.D}, {Plain.A: 1},
    datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), datetime.time(1, 2),
    Point(1), {"p": Point(1)}, b"bytes", {"s": {1, 2}}, object(),
    {"u": U5, "big": 2**64}, {"e": Plain.A, 1: "non-str key"},   # orjson refuses the value: the stdlib decides
], ids=repr)
def test_unserializable_values_raise_the_stdlib_type_error(value):
    with pytest.raises(TypeError) as got:
        dumps(value)
    with pytest.raises(TypeError) as want:
        ref_dumps(value)
    assert str(got.value) == str(want.value)


def test_circular_structures_raise_value_error():
    a: list = []
    a.append(a)
    d: dict = {"x": 1}
    d["self"] = [d]
    for value in (a, d, {"outer": d}):
        with pytest.raises(ValueError, match="Circular reference detected"):
            dumps(value)


def test_lone_surrogates_raise_unicode_encode_error():
    for value in ("\ud800", {"k": "a\udfffb"}, {"\ud83d": 1}):
        with pytest.raises(UnicodeEncodeError):
            dumps(value)
        with pytest.raises(UnicodeEncodeError):
            ref_dumps(value)


# ------------------------------------------------------------------ loads


def test_loads_reads_what_the_stdlib_wrote():
    values = ROUND_TRIP + [{"n": float("nan")}, [float("inf"), 1.0], "\ud800 lone"]
    for v in values:
        raw = json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
        got, want = outcome(loads, raw), outcome(json.loads, raw)
        if want[1] is None:
            assert got[1] is None and repr(got[0]) == repr(want[0])      # repr: NaN != NaN
        else:
            assert got[1] == want[1]
    # ensure_ascii=True output (\u escapes) and whitespace read the same too
    for v in ROUND_TRIP:
        assert loads(json.dumps(v, indent=2).encode()) == json.loads(json.dumps(v))


def test_loads_long_digit_runs_inside_strings_and_floats():
    value = {"id": "1234567890123456789012345", "f": 0.00012345678901234567, "n": -9223372036854775809}
    raw = ref_dumps(value)
    assert loads(raw) == value and type(loads(raw)["n"]) is int


@pytest.mark.parametrize("raw", [
    b"", b" ", b"{", b'{"a":1,}', b"[1,]", b"01", b"+1", b".5", b"1.", b"nul", b"'a'", b'"a\x01b"', b"1 2",
    b'"\\x41"', b"\xff", b'"\xff"', b"\xef\xbb\xbf[1]", b'"\\ud800"', b'"\xed\xa0\x80"', b"1e400", b"-Infinity",
    b"NaN", b"[NaN, Infinity]", b"\x00", b"\x0c1", b"  [1]  ", b"\t{}\n", b'{"a":1,"a":2}',
    b"-0", b"-0.0", b"1E+2", b"0.1000000000000000055511151231257827", b"2.2250738585072011e-308",
])
def test_loads_gives_json_loads_value_or_error(raw):
    got, want = outcome(loads, raw), outcome(json.loads, raw)
    assert (repr(got[0]), got[1]) == (repr(want[0]), want[1])


def _random_value(rnd, depth=0):
    kind = rnd.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rnd.choice([None, True, False])
    if kind == 1:
        return rnd.choice([0, -1, 7, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**25,
                           rnd.randrange(-10**6, 10**6)])
    if kind == 2:
        return rnd.choice([0.0, -0.0, 0.5, 1e-05, 1e-7, 3.14159, 1e16, -2.5e-300, rnd.uniform(-1e9, 1e9),
                           rnd.uniform(-1e-3, 1e-3), float("nan"), float("inf")])
    if kind in (3, 4, 5):
        alphabet = "abc xyz 0123456789 éß😀\"\\/\n\t\x01\u2028中"
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 30)))
    if kind in (6, 7):
        return {_random_value(rnd, 9) if rnd.random() < 0.05 else str(rnd.randrange(100)): _random_value(rnd, depth + 1)
                for _ in range(rnd.randrange(0, 5))}
    return [_random_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 5))]


def test_random_values_against_the_stdlib():
    rnd = random.Random(2024)
    same = differ = 0
    for _ in range(3000):
        v = _random_value(rnd)
        got, want = outcome(dumps, v), outcome(ref_dumps, v)
        assert want[1] is None, v
        assert got[1] is None, v
        raw = got[0]
        refused = outcome(orjson.dumps, v)[1] is not None
        assert refused == _orjson_refuses(v), v
        if refused or not _differs(v):
            same += 1
            assert raw == want[0], v                    # the stdlib's bytes
            expected = json.loads(want[0])
        else:
            differ += 1
            assert raw == orjson.dumps(v), v            # NaN / Infinity -> null, tiny floats in orjson's format
            expected = _nulled(json.loads(want[0]))     # ... which read back as None / the identical float
        assert repr(loads(raw)) == repr(json.loads(raw)) == repr(expected), v
        # and a damaged copy: the same value or the same error
        b = bytearray(raw)
        if b:
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        bad = bytes(b)
        g, w = outcome(loads, bad), outcome(json.loads, bad)
        assert (repr(g[0]), g[1]) == (repr(w[0]), w[1]), bad
    assert same > 1000 and differ > 200, (same, differ)


def test_stdlib_helpers_are_the_reference():
    v = {"a": [1, 2.5, None, "é"], "n": float("nan")}
    assert jsoncodec.stdlib_dumps(v) == ref_dumps(v)
    assert repr(jsoncodec.stdlib_loads(ref_dumps(v))) == repr(json.loads(ref_dumps(v)))


# ------------------------------------------------------------------ the publisher's use of it


def _publisher():
    from cdc_bridge.sink.publisher import TransactionalPublisher
    from cdc_bridge.sink.settings import KafkaSettings

    return TransactionalPublisher(KafkaSettings(bootstrap_servers="unused:9092"), transactional_id="t",
                                  checkpoint_topic="t.checkpoints", dead_letter_topic="t.dead-letter",
                                  bridge_name="t")


def _event(data):
    from cdc_bridge.aggregate.event import DomainEvent

    return DomainEvent(event_type="OrderPlaced", aggregate="Order", aggregate_id="7", sequence=1, schema_version=1,
                       occurred_at=0.0, source={"table": "s.orders"}, data=data, topic="shop.orders")


CHECKPOINT = {"bridge": "t", "position": {"gtid": "0-1-1"}, "batch": 1}


def test_publisher_event_values():
    pub = _publisher()
    plain = _event({"id": 7, "name": "Zoë 😀", "f": 0.25, "n": None, "l": [1, "x"]})
    odd = _event({"id": 7, "f": 1e-05, "nan": float("nan"), "u": uuid.UUID(int=1), "e": Plain.A})
    big = _event({"id": 7, "big": 2**64, "f": 1e-05, "nan": float("nan")})
    msgs, _, _ = pub._serialize([plain, odd, big], [], dict(CHECKPOINT))
    # plain data: the stdlib's bytes, as DomainEvent.value() (json.dumps) gives them
    assert msgs[0][2] == ref_dumps(plain.envelope()) == plain.value()
    # the documented differences: tiny float in orjson's format, NaN -> null, UUID / Enum serialized
    assert msgs[1][2] == dumps(odd.envelope())
    assert b'"data":{"id":7,"f":0.00001,"nan":null,"u":"00000000-0000-0000-0000-000000000001","e":1}' in msgs[1][2]
    assert json.loads(msgs[1][2]) == {**json.loads(plain.value()),
                                      "data": {"id": 7, "f": 1e-05, "nan": None,
                                               "u": "00000000-0000-0000-0000-000000000001", "e": 1}}
    # orjson refuses the big int: the whole envelope takes the stdlib, NaN and 1e-05 as json.dumps writes them
    assert msgs[2][2] == ref_dumps(big.envelope()) == big.value()
    assert b'"f":1e-05,"nan":NaN' in msgs[2][2]


@pytest.mark.parametrize("bad", [decimal.Decimal("1"), {1, 2}, object(), Point(1), datetime.date(2024, 1, 2)],
                         ids=repr)
def test_publisher_unserializable_event_is_fatal(bad):
    from cdc_bridge.sink.errors import FatalPublishError

    with pytest.raises(FatalPublishError, match="cannot be serialized to JSON: Object of type"):
        _publisher()._serialize([_event({"x": bad})], [], dict(CHECKPOINT))


def test_publisher_dead_letter_falls_back_to_repr():
    from cdc_bridge.mapping.command import DeadLetter

    u = uuid.UUID(int=1)
    # a Decimal and a set: neither orjson nor the stdlib writes them -> json.dumps(default=repr) for the record
    dl = DeadLetter(reason="rejected", detail="d",
                    record={"amount": decimal.Decimal("1.50"), "tags": {3}, "u": u, "ok": "é"})
    # UUID / Enum / NaN: written by the codec (no repr fallback)
    ok = DeadLetter(reason="orphan", detail="d", record={"x": float("nan"), "u": u, "e": Plain.A})
    msgs, _, _ = _publisher()._serialize([], [dl, ok], dict(CHECKPOINT))
    assert json.loads(msgs[0][2])["record"] == {"amount": "Decimal('1.50')", "tags": "{3}", "u": repr(u), "ok": "é"}
    assert msgs[1][2] == dumps(ok.to_json_dict())
    assert json.loads(msgs[1][2])["record"] == {"x": None, "u": str(u), "e": 1}


def test_only_what_orjson_refuses_reaches_the_stdlib_encoder(monkeypatch):
    calls = []
    stdlib = jsoncodec._stdlib_encode
    monkeypatch.setattr(jsoncodec, "_stdlib_encode", lambda obj: calls.append(obj) or stdlib(obj))
    # plain data, including the documented differences: orjson only, the stdlib encoder is never called
    plain = [v for v in ROUND_TRIP if not _orjson_refuses(v)]
    plain += [float("nan"), {"a": [float("inf")]}, 1e-05, {"f": [2.5e-07]}, uuid.UUID(int=5), Plain.A,
              {"e": [Plain.A, uuid.UUID(int=1)]}, {"s": "\u2028é😀"}, [[[[[]]]]],
              # enum members with a built-in mixin too: orjson writes an Enum's value before it looks at
              # subclasses; the same bytes as the stdlib (test_subclasses_and_non_str_keys_take_the_stdlib)
              Color.RED, {"c": Color.RED}, Kind.X]
    for v in plain:
        dumps(v)
    assert calls == []
    # what orjson refuses reaches it once per dumps(): big ints, non-str keys, subclasses, datetimes,
    # dataclasses, Decimal, lone surrogates, circular structures
    refused = [v for v in ROUND_TRIP if _orjson_refuses(v)]
    assert 0 < len(refused) < len(ROUND_TRIP) // 2
    circular: list = []
    circular.append(circular)
    others = [decimal.Decimal("1.5"), {"d": [decimal.Decimal("1")]}, 2**64, {"n": [-(2**63) - 1]},
              {1: 2}, {Name("k"): 1}, [Name("x")], collections.OrderedDict(a=1), {"c": Color.RED, "big": 2**64},
              datetime.datetime(2024, 1, 2), Point(1), {"u": uuid.UUID(int=5), "big": 2**64}, "\ud800", circular]
    for v in refused + others:
        outcome(dumps, v)
    assert [id(c) for c in calls] == [id(v) for v in refused + others]
