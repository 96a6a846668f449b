# cdc-bridge daemon image. State (LMDB) lives on the /var/lib/cdc-bridge volume;
# mappings are mounted at /etc/cdc-bridge/mappings, the config at /etc/cdc-bridge/bridge.yaml.
#
# Build stage: the slim image has no compiler, and both compiled extensions are optional in setup.py
# (the C row decoder cdc_bridge/source/_rowcodec.c and the Rust apply cdc_bridge._native, native/), so a
# plain `pip install .` there would silently fall back to the slower Python code. Build the wheel on the
# same base with gcc and a Rust toolchain instead, and fail if it lacks either extension.
# Rust: Debian bookworm's rustc/cargo (1.63/1.65) are older than the crate needs (rust-version 1.78:
# Cargo.lock v4, zmij), so rustup's minimal profile, pinned. The .so links only libc and libgcc_s.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain 1.95.0 --no-modify-path && cargo --version
WORKDIR /src
COPY pyproject.toml setup.py README.md MANIFEST.in ./
COPY native ./native
COPY cdc_bridge ./cdc_bridge
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist(); \
missing = [m for m in ('_rowcodec', '_native') if not any(m in n and n.endswith('.so') for n in names)]; \
sys.exit(f'wheel lacks the compiled {missing}' if missing else 0)"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --system --uid 10001 --home-dir /var/lib/cdc-bridge cdc \
    && mkdir -p /var/lib/cdc-bridge /etc/cdc-bridge/mappings && chown cdc /var/lib/cdc-bridge
COPY mappings /etc/cdc-bridge/mappings

USER cdc
VOLUME ["/var/lib/cdc-bridge"]
ENV CDC_BRIDGE__STATE__DIR=/var/lib/cdc-bridge/state \
    CDC_BRIDGE__MAPPINGS_DIR=/etc/cdc-bridge/mappings \
    CDC_BRIDGE__HTTP__PORT=9108
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["cdc-bridge", "run"]
CMD ["--config", "/etc/cdc-bridge/bridge.yaml"]
