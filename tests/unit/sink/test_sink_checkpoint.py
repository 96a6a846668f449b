import json

import pytest

from cdc_bridge.sink.checkpoint import (build_checkpoint, checkpoint_position, decode_checkpoint,
                                        encode_checkpoint)
from cdc_bridge.sink.errors import CheckpointError
from cdc_bridge.source.position import SourcePosition

POS = SourcePosition(gtid="0-1-42", binlog_file="mysql-bin.000003", binlog_pos=1234)


def test_record_shape_and_roundtrip():
    rec = build_checkpoint("orders", {"position": POS, "batch": 17, "state": {"lmdb_batch": 17}}, events=250,
                           now=1_795_000_000.5)
    assert rec == {"bridge": "orders", "position": POS.to_dict(), "batch": 17, "events": 250,
                   "committed_at": "2026-11-18T11:06:40.500000Z", "state": {"lmdb_batch": 17}}
    key, value = encode_checkpoint(rec)
    assert key == b"orders"
    assert json.loads(value) == rec and b" " not in value
    assert decode_checkpoint(value) == rec
    assert checkpoint_position(decode_checkpoint(value)) == POS


def test_position_may_be_a_dict():
    rec = build_checkpoint("orders", {"position": POS.to_dict(), "batch": 1}, events=0)
    assert rec["position"] == POS.to_dict() and rec["state"] == {}


@pytest.mark.parametrize("cp, match", [
    ({"batch": 1}, "needs 'position'"),
    ({"position": "mysql-bin.000001:4", "batch": 1}, "must be a SourcePosition"),
    ({"position": {"gtid": "0-1-1"}, "batch": 1}, "not a SourcePosition dict"),
    ({"position": POS}, "'batch' must be an int"),
    ({"position": POS, "batch": True}, "'batch' must be an int"),
    ({"position": POS, "batch": 1, "state": [1]}, "'state' must be a dict"),
    ({"position": POS, "batch": 1, "bridge": "other"}, "bridge 'other'"),
])
def test_invalid_checkpoints_are_refused(cp, match):
    with pytest.raises(CheckpointError, match=match):
        build_checkpoint("orders", cp, events=0)


def test_unencodable_state():
    rec = build_checkpoint("orders", {"position": POS, "batch": 1, "state": {"x": object()}}, events=0)
    with pytest.raises(CheckpointError, match="JSON"):
        encode_checkpoint(rec)


@pytest.mark.parametrize("value", [b"not json", b"[1]", b'{"bridge": "x"}', b'{"position": {"gtid": null}}'])
def test_decode_refuses_foreign_records(value):
    with pytest.raises(CheckpointError, match="not a valid checkpoint"):
        decode_checkpoint(value, where="at t[0]@5")


def test_extra_top_level_keys_are_kept():
    rec = build_checkpoint("orders", {"position": POS.to_dict(), "batch": 3, "origin": POS, "transactions": 7,
                                      "events": 12}, events=99)
    assert rec["origin"] == POS.to_dict() and rec["transactions"] == 7 and rec["events"] == 12
    assert decode_checkpoint(encode_checkpoint(rec)[1]) == rec
