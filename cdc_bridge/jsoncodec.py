"""The JSON codec of Kafka event envelopes and LMDB state records: compact, UTF-8, non-ASCII as is.

    dumps(obj) -> bytes   json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
                          byte for byte for the values the bridge handles (differences below)
    loads(raw) -> Any     json.loads(raw): the same values, the same exceptions

Both take orjson, and the stdlib (the C encoder / scanner, called directly) for what orjson refuses.

dumps: orjson first (no walk over the value beforehand: that walk cost as much as orjson itself);
what orjson refuses with TypeError takes the stdlib, which writes it or raises its own error: ints
beyond 64 bits, non-str dict keys, subclasses of the built-ins (the stdlib decides what an IntEnum
or OrderedDict becomes, as it did), datetimes and dataclasses (TypeError, as before), Decimal,
str with lone surrogates (UnicodeEncodeError), circular structures (ValueError). Where the bytes
differ from json.dumps, JSON readers get the same values or better:
- floats with 1e-9 <= |x| < 1e-4 are written in orjson's format (repr 1e-05 -> 0.00001, 2.5e-07 ->
  2.5e-7), which decodes to the same float; every other finite float gets repr()'s bytes
  (checked on 540k random doubles; the unit tests check 20k and the neighbours of every power of
  ten, so an orjson upgrade that changes it fails);
- NaN and +-Infinity are written as null (json.dumps writes the NaN / Infinity tokens, which are
  not JSON and which many consumers reject; a MySQL/MariaDB column never holds them);
- uuid.UUID and enum.Enum values (from a Python decider) are written as their string / value
  where json.dumps raised TypeError.
One value orjson refuses sends the whole document to the stdlib (then NaN is NaN, a UUID a TypeError).

loads: orjson for bytes without a run of 19+ digits (orjson reads integers outside
[-2**63, 2**64) as floats, silently); anything orjson rejects (NaN / Infinity, which the stdlib
writes, 1e400, escaped lone surrogates, invalid input) takes the stdlib's scanner, which gives
the value or the error json.loads gives. It reads everything earlier versions wrote (stdlib JSON).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

__all__ = ["dumps", "loads"]

# --------------------------------------------------------------------------- stdlib path

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _stdlib_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """encoder.encode, byte for byte, with CPython's C encoder built once instead of at every call and
    without circular-reference bookkeeping. A circular structure (which makes the C encoder recurse)
    is handed to encoder.encode, which raises its usual ValueError."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None or encoder.check_circular is False:
        return encoder.encode
    c_encode = make(None, encoder.default,
                    json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring,
                    None, encoder.key_separator, encoder.item_separator, encoder.sort_keys, encoder.skipkeys,
                    encoder.allow_nan)
    join = "".join

    def encode(obj: Any) -> str:
        try:
            return join(c_encode(obj, 0))
        except RecursionError:
            return encoder.encode(obj)

    return encode


_stdlib_encode = _stdlib_encoder(_encoder)


def stdlib_dumps(obj: Any) -> bytes:
    """What dumps() writes, always through the stdlib (for tests and comparisons)."""
    return _stdlib_encode(obj).encode("utf-8")


_scan = json.JSONDecoder().scan_once


def stdlib_loads(raw: bytes) -> Any:
    """json.loads(raw), for what dumps() writes (UTF-8, no surrounding whitespace) through the C scanner
    directly (json.loads(bytes) first sniffs the encoding in Python). Anything else takes json.loads."""
    try:
        s = raw.decode("utf-8")
        obj, end = _scan(s, 0)
        if end == len(s):
            return obj
    except Exception:  # noqa: BLE001 - json.loads below gives the proper error, or the value
        pass
    return json.loads(raw)


# --------------------------------------------------------------------------- orjson path

# subclasses of the built-ins (OrderedDict, str subclasses; not Enums, which orjson writes as their value),
# datetimes and dataclasses are handed back (TypeError) so the stdlib decides what they become, as before
_ORJSON_OPTIONS = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                   | orjson.OPT_PASSTHROUGH_DATACLASS)
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads
_join = b"".join


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII as is; TypeError / ValueError for what cannot be serialized."""
    try:
        # an exact-size copy: orjson's own result keeps ~4 KB of heap each (its grow-then-shrink
        # buffer leaves holes), and a batch holds thousands of them: +30 MB RSS for 0.08 us each
        return _join((_orjson_dumps(obj, option=_ORJSON_OPTIONS), b""))
    except TypeError:   # orjson.JSONEncodeError: big int, non-str key, subclass, Decimal, surrogate, depth, cycle
        pass
    return _stdlib_encode(obj).encode("utf-8")


# a byte string with every digit -> "0", everything else -> " ": a run of 19 digits is then a substring
_DIGIT_CLASS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19


def loads(raw: bytes) -> Any:
    """json.loads(raw): the same value, or the same exception."""
    if type(raw) is bytes and _LONG_RUN not in raw.translate(_DIGIT_CLASS):
        try:
            return _orjson_loads(raw)
        except ValueError:              # orjson.JSONDecodeError: NaN, 1e400, "\ud800", not JSON ...
            pass
    return stdlib_loads(raw)
