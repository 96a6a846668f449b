"""The command log's record value: a command encoded and decoded back is the same command."""

from __future__ import annotations

import json

from cdc_bridge.mapping.command import Command
from cdc_bridge.ingest.commands_topic import decode_command, encode_command
from cdc_bridge.source.position import SourcePosition


def command(**over) -> Command:
    base = dict(command_type="DeleteOrder", aggregate="Order", aggregate_id="42", entity="root", entity_id="42",
                operation="delete", payload={"order_id": 42, "total": "12.50"}, before={"order_id": 42, "total": "12.50"},
                table="shop.orders", position=SourcePosition("0-1-9", "mysql-bin.000002", 777), txn_id="0-1-9",
                commit_ts=1_700_000_000.5, index=3)
    return Command(**{**base, **over})


def test_round_trip_keeps_every_field_including_soft():
    for cmd in (command(), command(soft=True), command(operation="insert", before=None, payload={"ü": "✓"})):
        back = decode_command(encode_command(cmd))
        assert back == cmd and back.soft == cmd.soft and back.model_dump() == cmd.model_dump()


def test_soft_is_written_only_when_set_so_older_logs_read_the_same():
    assert "soft" not in json.loads(encode_command(command()))
    assert json.loads(encode_command(command(soft=True)))["soft"] is True
    old = json.loads(encode_command(command()))   # a record written before the field existed
    assert decode_command(json.dumps(old).encode()).soft is False
