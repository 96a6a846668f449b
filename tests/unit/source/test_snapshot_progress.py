"""SnapshotProgress: rows against the estimate, rate, ETA and the terminal line."""

from __future__ import annotations

from cdc_bridge.mapping.schema import AggregateMapping
from cdc_bridge.source.snapshot import SnapshotChunk, SnapshotProgress

ORDER = AggregateMapping.model_validate({
    "aggregate": "Order", "root": {"table": "shop.orders", "id": "id"},
    "children": [{"name": "lines", "table": "shop.order_lines", "id": "id", "parent_key": "order_id"}]})
CUSTOMER = AggregateMapping.model_validate({"aggregate": "Customer", "root": {"table": "shop.customers", "id": "id"}})


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def chunk(aggregate: str, rows: int, cursor=None) -> SnapshotChunk:
    return SnapshotChunk(aggregate, [], cursor or {"aggregate": aggregate, "after": [0]}, rows)


def test_render_one_aggregate():
    clock = Clock()
    p = SnapshotProgress.from_estimate([ORDER], {"shop.orders": 30_000, "shop.order_lines": 70_000}, clock=clock)
    assert p.render() == "snapshot  0/100,000 rows  0%  0 rows/s  ETA ?"
    clock.t += 1
    p.update(chunk("Order", 12_300))
    clock.t += 2.65853
    p.update(chunk("Order", 32_700))
    assert p.rows_done == 45_000 and 0.449 < p.ratio < 0.451
    assert p.render() == "snapshot  Order  45,000/100,000 rows  45%  12,300 rows/s  ETA 4s"


def test_table_estimates_and_plain_add():
    # what reader.estimate() returns can be passed as is; add() counts rows without an aggregate
    clock = Clock()
    p = SnapshotProgress({"shop.orders": 400, "shop.order_lines": 600}, clock=clock)
    clock.t += 2
    p.add(500)
    assert p.render() == "snapshot  500/1,000 rows  50%  250 rows/s  ETA 2s"
    p.add(700, "Order")
    assert p.rows_total == 1200 and p.ratio == 0.99  # more than estimated: 100% only once finished
    p.finish()
    assert p.ratio == 1.0 and p.render().startswith("snapshot  Order  1,200/1,200 rows  100%")


def test_several_aggregates_and_a_low_estimate():
    clock = Clock()
    p = SnapshotProgress.from_estimate([ORDER, CUSTOMER], {"shop.orders": 10, "shop.customers": 1000}, clock=clock)
    clock.t += 1
    p.update(chunk("Order", 20))
    assert p.render() == "snapshot  Order (1/2)  20/1,010 rows  1%  20 rows/s  ETA 50s"
    clock.t += 1
    p.update(chunk("Order", 5, {"aggregate": "Customer", "after": None}))  # the cursor moved on: Order is read
    assert p.expected["Order"] == 25 and p.rows_total == 1025
    clock.t += 1
    p.update(chunk("Customer", 100))
    assert p.render() == "snapshot  Customer (2/2)  125/1,025 rows  12%  42 rows/s  ETA 22s"
    p.update(chunk("Customer", 10, {"done": True}))
    p.finish()
    assert p.rows_total == p.rows_done == 135 and p.ratio == 1.0 and p.eta_seconds == 0


def test_resumed_rows_do_not_count_toward_the_rate():
    clock = Clock()
    p = SnapshotProgress({"Order": 10_000}, clock=clock)
    p.skip(5_000)
    clock.t += 1
    p.update(chunk("Order", 100))
    assert p.rows_done == 5_100 and p.rate == 100
    assert p.render() == "snapshot  Order  5,100/10,000 rows  51%  100 rows/s  ETA 49s"


def test_rate_uses_a_recent_window():
    clock = Clock()
    p = SnapshotProgress({"Order": 10_000_000}, clock=clock, window_seconds=10)
    for _ in range(30):  # slow start: 100 rows/s
        clock.t += 1
        p.update(chunk("Order", 100))
    for _ in range(30):  # then 10,000 rows/s
        clock.t += 1
        p.update(chunk("Order", 10_000))
    assert 9_000 < p.rate <= 10_000
    assert "ETA 16m" in p.render() or "ETA 17m" in p.render()


def test_eta_hours_and_unknown():
    clock = Clock()
    p = SnapshotProgress(0, clock=clock)
    assert p.eta_seconds is None and p.ratio == 0.0
    p = SnapshotProgress(10_000_000, clock=clock)
    clock.t += 10
    p.add(1000)
    assert p.render().endswith("ETA 27h46m")


def test_from_estimate_sums_an_aggregates_tables():
    p = SnapshotProgress.from_estimate([ORDER], {"shop.orders": 100, "shop.order_lines": 250, "other.t": 5})
    assert p.expected == {"Order": 350} and p.aggregates == ["Order"]
