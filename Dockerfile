# cdc-bridge daemon image. State (LMDB) lives on the /var/lib/cdc-bridge volume;
# mappings are mounted at /etc/cdc-bridge/mappings, the config at /etc/cdc-bridge/bridge.yaml.
#
# Build stage: the slim image has no compiler, and the C row decoder (cdc_bridge/source/_rowcodec.c)
# is optional in setup.py, so a plain `pip install .` there would silently fall back to the slower
# Python decoder. Build the wheel on the same base with gcc instead, and fail if it lacks the extension.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cdc_bridge ./cdc_bridge
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist(); \
sys.exit(not any('_rowcodec' in n and n.endswith('.so') for n in names))"

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
