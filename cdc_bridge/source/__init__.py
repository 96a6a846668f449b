"""Binlog source: committed source transactions of normalized row changes, with positions."""

from cdc_bridge.source.binlog import BinlogSource
from cdc_bridge.source.errors import (BinlogDisabledError, BinlogSettingsError, MissingPrivilegesError,
                                      PositionPurgedError, ServerIdConflictError, SourceError,
                                      SourceUnavailableError)
from cdc_bridge.source.position import SourcePosition
from cdc_bridge.source.preflight import ServerInfo, check_server
from cdc_bridge.source.settings import SourceSettings
from cdc_bridge.source.transaction import Operation, RowChange, SourceTransaction

__all__ = [
    "BinlogDisabledError",
    "BinlogSettingsError",
    "BinlogSource",
    "MissingPrivilegesError",
    "Operation",
    "PositionPurgedError",
    "RowChange",
    "ServerIdConflictError",
    "ServerInfo",
    "SourceError",
    "SourcePosition",
    "SourceSettings",
    "SourceTransaction",
    "SourceUnavailableError",
    "check_server",
]
