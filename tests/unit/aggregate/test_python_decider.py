"""A Python decider plugged by dotted path (cdc_bridge.aggregate.examples:CustomerDecider)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_bridge.aggregate.decider import Decider, load_decider
from cdc_bridge.aggregate.declarative import DeclarativeDecider
from cdc_bridge.aggregate.examples import CustomerDecider
from cdc_bridge.aggregate.exceptions import DeciderLoadError
from cdc_bridge.aggregate.runtime import AggregateRuntime
from cdc_bridge.aggregate.testing import SourceScript, decide_and_evolve, delete, insert, update
from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.state.lmdb_store import LmdbStateStore

ALICE = {"customer_id": 1, "email": "alice@example.com", "name": "Alice", "country": "CH"}


def customers(decider: str | None = "cdc_bridge.aggregate.examples:CustomerDecider") -> AggregateMapping:
    return AggregateMapping.model_validate({
        "aggregate": "Customer",
        "decider": decider,
        "root": {"table": "shop.customers", "id": "id",
                 "fields": {"id": "customer_id", "email": None, "name": None, "country": None}},
    })


def test_load_decider_imports_the_class_named_in_the_mapping() -> None:
    d = load_decider(customers())
    assert isinstance(d, CustomerDecider)
    assert isinstance(d, Decider)
    assert d.aggregate == "Customer"


def test_without_a_decider_path_the_declarative_decider_is_used() -> None:
    assert isinstance(load_decider(customers(None)), DeclarativeDecider)


@pytest.mark.parametrize(
    "path,match",
    [
        ("cdc_bridge.aggregate.examples.CustomerDecider", "package.module:ClassName"),
        ("cdc_bridge.no_such_module:X", "cannot import"),
        ("cdc_bridge.aggregate.examples:NoSuchClass", "has no 'NoSuchClass'"),
        ("cdc_bridge.aggregate.testing:Row", "constructing"),
        ("cdc_bridge.aggregate.declarative:_Transition", "constructing"),
    ],
)
def test_bad_decider_paths_are_reported_clearly(path: str, match: str) -> None:
    mapping = customers().model_copy(update={"decider": path})  # past the schema's own check
    with pytest.raises(DeciderLoadError, match=match):
        load_decider(mapping)


def test_a_python_decider_given_when_then() -> None:
    m = customers()
    d = load_decider(m)
    src = SourceScript(m)
    # given a registered customer
    state, dec = decide_and_evolve(d, d.initial_state(), src.txn(insert("root", "1", **ALICE))[0])
    assert [e.event_type for e in dec.events] == ["CustomerRegistered"]
    # when one update changes the e-mail and the name
    cmds, _ = src.txn(update("root", "1", **{**ALICE, "email": "a@example.org", "name": "Alice B."}))
    state, dec = decide_and_evolve(d, state, cmds)
    # then two events, the e-mail change first
    assert [(e.event_type, e.data.get("changed")) for e in dec.events] == [
        ("CustomerEmailChanged", None), ("CustomerProfileUpdated", ["name"]),
    ]
    assert state["profile"]["email"] == "a@example.org"
    # when deleted, then forgotten without personal data
    state, dec = decide_and_evolve(d, state, src.txn(delete("root", "1", **ALICE))[0])
    assert [(e.event_type, e.data) for e in dec.events] == [("CustomerForgotten", {"customer_id": "1"})]
    # and an update afterwards is refused
    _, dec = decide_and_evolve(d, state, src.txn(update("root", "1", **ALICE))[0])
    assert [r.reason for r in dec.rejections] == ["update_of_unknown_aggregate"]


def test_a_python_decider_runs_in_the_runtime(tmp_path: Path) -> None:
    m = customers()
    src = SourceScript(m)
    with LmdbStateStore(tmp_path / "s", partitions=3) as store:
        rt = AggregateRuntime.from_mappings([m], store, held_max_age_seconds=60, held_max_count=10)
        r1 = rt.apply(*src.txn(insert("root", "1", **ALICE)))
        r2 = rt.apply(*src.txn(update("root", "1", **{**ALICE, "country": "DE"})))
        assert [e.event_id for e in r1.events + r2.events] == ["Customer:1:1", "Customer:1:2"]
        assert r2.events[0].topic == "events.customer"
