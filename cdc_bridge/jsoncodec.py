"""The JSON codec of Kafka event envelopes and LMDB state records: compact, UTF-8, non-ASCII as is.

    dumps(obj) -> bytes   json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
                          byte for byte, with the same exceptions
    loads(raw) -> Any     json.loads(raw): the same values, the same exceptions

Both take orjson where it is known to give the stdlib's result, and the stdlib (the C encoder /
scanner, called directly) everywhere else.

dumps: orjson only gets a tree of *exact* built-in types -- dict, list, tuple, str, int, bool,
None, and floats that are finite and not in 1e-9 <= |x| < 1e-4 -- as checked by a walk over the
values first (about a third of the stdlib encoder's cost: on bench/micro.py's envelopes and state
records, walk + orjson take ~2.3 and ~3.1 us against ~5.2 and ~6 us). Anything else takes the stdlib:

- NaN, Infinity: orjson writes null, the stdlib NaN / Infinity / -Infinity;
- floats with 1e-9 <= |x| < 1e-4: orjson writes other bytes for the same value (repr 1e-05 ->
  0.00001, 1.5212603486793025e-05 -> 0.000015212603486793025, 2.5e-07 -> 2.5e-7, 1e-09 -> 1e-9),
  which decode to equal floats. Every other finite float gets repr()'s bytes from both, e.g.
  -0.0, 0.0001, 1e-10, 1e+16, 5e-324 (checked on 540k random doubles once; the unit tests check
  20k of them and the neighbours of every power of ten, so an orjson upgrade that changes it fails);
- types orjson serializes but the stdlib refuses with TypeError (uuid.UUID, enum.Enum,
  datetime/date/time, dataclasses, orjson.Fragment) and subclasses of the built-ins (the stdlib
  decides what an IntEnum or OrderedDict becomes, as it did);
- whatever orjson raises on (TypeError): ints beyond 64 bits, non-str dict keys, str with lone
  surrogates, nesting deeper than orjson's limit. A circular structure stops the walk
  (RecursionError) and gets the stdlib's ValueError("Circular reference detected").
So the bytes, and the errors (TypeError / ValueError incl. UnicodeEncodeError), are the stdlib's.

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

_SCALARS = frozenset({str, int, bool, type(None)})
_INF = float("inf")
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS   # str-subclass dict keys too: TypeError -> stdlib
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads


def _plain(container: Any) -> bool:
    """Only exact dict/list/tuple/str/int/bool/None and floats orjson writes as repr() does, all the way down."""
    for v in (container.values() if type(container) is dict else container):
        t = type(v)
        if t in _SCALARS:
            continue
        if t is float:
            a = abs(v)
            if not (1e-4 <= a < _INF or a < 1e-9):     # NaN, +-Infinity, or orjson's own float format
                return False
        elif t is dict or t is list or t is tuple:
            if not _plain(v):
                return False
        else:
            return False
    return True


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, non-ASCII as is: json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    encoded to UTF-8, byte for byte; TypeError / ValueError for what the stdlib cannot serialize."""
    t = type(obj)
    if t is dict or t is list or t is tuple:
        try:
            plain = _plain(obj)
        except RecursionError:          # circular (or very deep): the stdlib says which
            plain = False
    elif t is float:
        a = abs(obj)
        plain = 1e-4 <= a < _INF or a < 1e-9
    else:
        plain = t in _SCALARS
    if plain:
        try:
            return _orjson_dumps(obj, option=_ORJSON_OPTIONS)
        except TypeError:               # orjson.JSONEncodeError: big int, non-str key, surrogate, depth
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
