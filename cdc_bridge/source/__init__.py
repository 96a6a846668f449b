"""Binlog source: committed source transactions of normalized row changes, with positions."""

from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.transaction import Operation, RowChange, SourceTransaction

__all__ = ["Operation", "RowChange", "SourcePosition", "SourceTransaction"]
