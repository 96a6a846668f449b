"""cdc-bridge: binlog row changes -> commands -> aggregates -> domain events on Kafka, exactly once."""

__version__ = "0.1.0"
