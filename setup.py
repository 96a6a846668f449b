# Metadata lives in pyproject.toml; this file only adds the C extension, which setuptools merges in.
# optional=True: without a compiler the install still succeeds and values.py uses its Python row
# decoder (tests/unit/source/test_rowcodec.py fails then, so a broken build does not go unnoticed).
from setuptools import Extension, setup

setup(ext_modules=[Extension("cdc_bridge.source._rowcodec", ["cdc_bridge/source/_rowcodec.c"], optional=True)])
