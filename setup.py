# Metadata lives in pyproject.toml; this file only adds the compiled extensions, which setuptools merges in.
#
# Both are optional: without a C compiler / without cargo the install still succeeds and the Python
# code paths are used (source/values.py's row decoder, aggregate/native.py's ReferenceCore; the latter
# logs one warning). tests/unit/source/test_rowcodec.py and tests/unit/aggregate/test_native_core.py
# fail then, when the toolchain is there, so a broken build does not go unnoticed.
#
# _rowcodec: C, cdc_bridge/source/_rowcodec.c
# _native:   Rust (PyO3), native/ (the declarative aggregates' apply), built by setuptools-rust
from setuptools import Extension, setup

kwargs = {}
try:
    from setuptools_rust import Binding, RustExtension
except ImportError:  # built without build isolation, setuptools-rust not installed: no _native
    print("setuptools-rust is not installed: building without cdc_bridge._native (the Python apply is used)")
else:
    kwargs["rust_extensions"] = [
        RustExtension("cdc_bridge._native", path="native/Cargo.toml", binding=Binding.PyO3, optional=True,
                      debug=False),
    ]

setup(ext_modules=[Extension("cdc_bridge.source._rowcodec", ["cdc_bridge/source/_rowcodec.c"], optional=True)],
      **kwargs)
