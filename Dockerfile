# cdc-bridge daemon image. State (LMDB) lives on the /var/lib/cdc-bridge volume;
# mappings are mounted at /etc/cdc-bridge/mappings, the config at /etc/cdc-bridge/bridge.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cdc_bridge ./cdc_bridge
RUN pip install . && useradd --system --uid 10001 --home-dir /var/lib/cdc-bridge cdc \
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
