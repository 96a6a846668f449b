from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdc_bridge.aggregate.declarative import DeclarativeDecider
from cdc_bridge.aggregate.testing import SourceScript
from cdc_bridge.mapping.schema import AggregateMapping

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def orders_mapping() -> AggregateMapping:
    return AggregateMapping.model_validate(yaml.safe_load((REPO / "mappings" / "orders.yaml").read_text()))


@pytest.fixture
def decider(orders_mapping: AggregateMapping) -> DeclarativeDecider:
    return DeclarativeDecider(orders_mapping)


@pytest.fixture
def src(orders_mapping: AggregateMapping) -> SourceScript:
    return SourceScript(orders_mapping)
