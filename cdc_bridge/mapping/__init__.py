"""Declarative mappings: YAML files (schema.py) -> MappingSet (loader.py) -> commands (translate.py); `check` (check.py)."""
