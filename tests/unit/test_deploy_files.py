"""The files under deploy/ parse, fit together, and only use metrics the bridge exports.

`metric_names_used_in_deploy()` is also used by the integration test that scrapes a running bridge.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
KUBERNETES = DEPLOY / "kubernetes"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

METRIC_RE = re.compile(r"cdc_bridge_[a-z_]+")
# prometheus_client appends these to the family name: _total (counters), _bucket/_sum/_count (histograms),
# _info (Info), _created (counters and histograms).
SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_info", "_created")
COMPOSE_SERVICES = {"mysql", "kafka", "bridge", "prometheus", "grafana"}


# ----------------------------------------------------------------------------- helpers


def _files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in suffixes)


def yaml_files() -> list[Path]:
    return _files(".yml", ".yaml")


def json_files() -> list[Path]:
    return _files(".json")


def load_yaml_docs(path: Path) -> list[Any]:
    """All documents of a YAML file; a syntax error names the file."""
    try:
        return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except yaml.YAMLError as e:
        raise AssertionError(f"{path.relative_to(ROOT)}: invalid YAML: {e}") from None


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AssertionError(f"{path.relative_to(ROOT)}: invalid JSON: {e}") from None


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of nested dicts and lists."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def dashboard_exprs() -> list[str]:
    """The PromQL of the dashboard: every `expr` of every panel and the templating queries."""
    dash = load_json(DASHBOARD)
    exprs = [v for k, v in _walk(dash.get("panels", [])) if k == "expr" and isinstance(v, str)]
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        exprs.append(q.get("query", "") if isinstance(q, dict) else str(q or ""))
        exprs.append(str(var.get("definition", "")))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    (doc,) = load_yaml_docs(ALERTS)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_exprs() -> list[str]:
    return [str(rule["expr"]) for rule in alert_rules()]


def metric_names_used_in_deploy() -> set[str]:
    """Every `cdc_bridge_*` series name in the dashboard's and the alert rules' PromQL, as written
    (with their _total/_bucket/_sum/_count/_info suffixes)."""
    names: set[str] = set()
    for expr in dashboard_exprs() + alert_exprs():
        names.update(METRIC_RE.findall(expr))
    return names


def strip_sample_suffix(name: str) -> str:
    for suffix in SAMPLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported_metric_names() -> tuple[set[str], set[str]]:
    """(family names, sample names) of a fresh BridgeMetrics registry."""
    from cdc_bridge.observability.metrics import BridgeMetrics

    metrics = BridgeMetrics()
    families: set[str] = set()
    samples: set[str] = set()
    for family in metrics.registry.collect():
        families.add(family.name)
        samples.update(s.name for s in family.samples)
    return families, samples


def kubernetes_objects() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name.endswith("-patch.yaml"):
            continue
        out.extend((path, doc) for doc in load_yaml_docs(path))
    return out


def the_object(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in kubernetes_objects() if doc.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind} under deploy/kubernetes, found {len(found)}"
    return found[0]


# ----------------------------------------------------------------------------- every file parses


def test_deploy_has_yaml_and_json_files() -> None:
    assert COMPOSE_FILE.is_file() and DASHBOARD.is_file() and ALERTS.is_file() and PROMETHEUS.is_file()
    assert len(yaml_files()) >= 10


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_file_parses(path: Path) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{path.relative_to(ROOT)}: no YAML document"


@pytest.mark.parametrize("path", json_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_json_file_parses(path: Path) -> None:
    assert load_json(path) is not None


# ----------------------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    (doc,) = load_yaml_docs(COMPOSE_FILE)
    return doc


def test_compose_has_the_five_services() -> None:
    services = set(_compose()["services"])
    assert COMPOSE_SERVICES <= services, f"missing services: {sorted(COMPOSE_SERVICES - services)}"


def test_compose_bridge_service() -> None:
    compose = _compose()
    bridge = compose["services"]["bridge"]
    assert bridge["build"] == "../.."
    assert "CDC_BRIDGE__SOURCE__PASSWORD" in bridge["environment"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in bridge["volumes"]}
    assert mounts["/etc/cdc-bridge/bridge.yaml"] == "./bridge.yaml"
    state_volume = mounts["/var/lib/cdc-bridge"]
    assert state_volume in compose["volumes"], "the bridge's state must be on a named volume"
    for dep in ("mysql", "kafka"):
        assert bridge["depends_on"][dep]["condition"] == "service_healthy"
        assert "healthcheck" in compose["services"][dep], f"{dep} needs a healthcheck for depends_on"
    assert bridge["stop_grace_period"] == "60s"


def test_compose_mysql_binlog_flags_and_init_scripts() -> None:
    mysql = _compose()["services"]["mysql"]
    flags = set(mysql["command"])
    for flag in ("--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
                 "--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--server-id=1"):
        assert flag in flags
    assert any(f.startswith("--log-bin") for f in flags)
    targets = [v.split(":")[1] for v in mysql["volumes"]]
    assert any(t.startswith("/docker-entrypoint-initdb.d/") and t.endswith("schema.sql") for t in targets)
    grants = (DEPLOY / "compose" / "mysql" / "10-cdc-user.sh").read_text()
    for privilege in ("REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT"):
        assert privilege in grants


def test_compose_kafka_is_kraft_with_single_replica_internal_topics() -> None:
    env = _compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for key in ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"):
        assert int(env[key]) == 1, key


def test_compose_bind_mounts_exist() -> None:
    base = COMPOSE_FILE.parent
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (base / source).exists(), f"service {name} mounts {source}, which does not exist"


def test_compose_bridge_config_is_valid() -> None:
    from cdc_bridge.config import load_config

    cfg = load_config(DEPLOY / "compose" / "bridge.yaml", env={"CDC_BRIDGE__SOURCE__PASSWORD": "x"})
    assert cfg.source.host == "mysql" and cfg.kafka.bootstrap_servers == "kafka:9092"
    assert cfg.http.port == 9108
    assert str(cfg.state.dir).startswith("/var/lib/cdc-bridge")


# ----------------------------------------------------------------------------- prometheus


def test_prometheus_scrapes_the_bridge_and_loads_the_alerts() -> None:
    (doc,) = load_yaml_docs(PROMETHEUS)
    assert "alerts.yml" in doc["rule_files"]
    targets = [t for job in doc["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert any(t.endswith(":9108") for t in targets)


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), rule["alert"]
        ann = rule.get("annotations", {})
        assert ann.get("summary") and len(ann.get("description", "")) > 80, f"{rule['alert']}: say what to do"
        assert ann.get("runbook_url", "").startswith("docs/operations.md#"), rule["alert"]
    exprs = " ".join(alert_exprs())
    for needed in ("cdc_bridge_source_lag_seconds", "cdc_bridge_dead_letters_total",
                   "cdc_bridge_held_children_oldest_age_seconds", "cdc_bridge_ready",
                   "cdc_bridge_last_loop_timestamp_seconds", "cdc_bridge_batch_aborts_total",
                   "cdc_bridge_lmdb_map_used_ratio", "cdc_bridge_reconnects_total", "up{"):
        assert needed in exprs, f"no alert uses {needed}"


def test_runbook_anchors_exist_in_operations_doc() -> None:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
               for line in text.splitlines() if line.startswith("#")}
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no heading for #{anchor}"


def test_prometheusrule_carries_the_same_groups_as_alerts_yml() -> None:
    (alerts,) = load_yaml_docs(ALERTS)
    rule = the_object("PrometheusRule")
    assert rule["spec"]["groups"] == alerts["groups"], (
        "deploy/kubernetes/monitoring/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: "
        "copy the groups of alerts.yml into it")


# ----------------------------------------------------------------------------- grafana


def test_dashboard_structure() -> None:
    dash = load_json(DASHBOARD)
    assert dash["uid"] and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in ("${DS_PROMETHEUS}", "prometheus"), panel["title"]
        assert panel["targets"] and all(t.get("expr") for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_has_the_expected_panels() -> None:
    exprs = " ".join(dashboard_exprs())
    for needed in ("cdc_bridge_source_lag_seconds", "cdc_bridge_source_rows_total",
                   "cdc_bridge_source_transactions_total", "cdc_bridge_events_published_total",
                   "cdc_bridge_commands_total", "cdc_bridge_end_to_end_latency_seconds_bucket",
                   "cdc_bridge_kafka_commit_duration_seconds_bucket", "cdc_bridge_dead_letters_total",
                   "cdc_bridge_rejections_total", "cdc_bridge_held_children", "cdc_bridge_held_children_oldest_age_seconds",
                   "cdc_bridge_lmdb_size_bytes", "cdc_bridge_lmdb_map_used_ratio", "cdc_bridge_reconnects_total",
                   "cdc_bridge_errors_total", "cdc_bridge_ready", "cdc_bridge_source_connected",
                   "cdc_bridge_kafka_connected", "cdc_bridge_source_binlog_file_index",
                   "cdc_bridge_source_binlog_offset_bytes"):
        assert needed in exprs, f"the dashboard does not show {needed}"
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs


def test_grafana_provisioning() -> None:
    (ds,) = load_yaml_docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert ds["datasources"][0]["uid"] == "prometheus"
    (prov,) = load_yaml_docs(DEPLOY / "grafana" / "provisioning" / "dashboards" / "cdc-bridge.yml")
    path = prov["providers"][0]["options"]["path"]
    mounts = [v.split(":")[1] for v in _compose()["services"]["grafana"]["volumes"]]
    assert any(m.startswith(path) and m.endswith(".json") for m in mounts), "the dashboard is not mounted"


# ----------------------------------------------------------------------------- metric names


def test_metric_names_used_in_deploy_are_exported_by_the_bridge() -> None:
    used = metric_names_used_in_deploy()
    assert len(used) >= 20, used
    families, samples = exported_metric_names()
    defined = families | samples
    unknown = sorted(n for n in used if n not in defined and strip_sample_suffix(n) not in defined)
    assert not unknown, (
        f"deploy/ uses metrics that cdc_bridge/observability/metrics.py does not define: {unknown}")


def test_every_metric_is_used_in_deploy_and_documented() -> None:
    families, _ = exported_metric_names()
    used = {strip_sample_suffix(n) for n in metric_names_used_in_deploy()}
    unused = sorted(families - used)
    assert not unused, f"metrics on no dashboard panel nor alert (add them to deploy/grafana/dashboard.json): {unused}"
    doc = OPERATIONS_DOC.read_text(encoding="utf-8")
    undocumented = sorted(f for f in families if f"`{f}" not in doc)
    assert not undocumented, f"metrics missing from docs/operations.md: {undocumented}"


# ----------------------------------------------------------------------------- kubernetes


def test_kustomizations_list_existing_files() -> None:
    for kust in KUBERNETES.rglob("kustomization.yaml"):
        (doc,) = load_yaml_docs(kust)
        for resource in doc["resources"]:
            target = kust.parent / resource
            assert target.is_file() or (target / "kustomization.yaml").is_file(), \
                f"{kust.relative_to(ROOT)} lists missing {resource}"
        for patch in doc.get("patches", []):
            assert (kust.parent / patch["path"]).is_file(), f"{kust.relative_to(ROOT)} patches with missing {patch}"


def test_statefulset_probes_volume_and_shutdown() -> None:
    sts = the_object_named("StatefulSet", "cdc-bridge")
    spec = sts["spec"]
    assert spec["replicas"] == 1, "one bridge per source database: a second replica would fence the first"
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert 9108 in [p["containerPort"] for p in container["ports"]]
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/var/lib/cdc-bridge"] in claims
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CDC_BRIDGE__SOURCE__PASSWORD"]["valueFrom"]
    configmaps = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    objects = {(d["kind"], d["metadata"]["name"]) for _, d in kubernetes_objects()}
    for name in configmaps:
        assert ("ConfigMap", name) in objects, f"the StatefulSet mounts ConfigMap {name}, which is not defined"
    secret = env["CDC_BRIDGE__SOURCE__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert ("Secret", secret) in objects
    service = the_object_named("Service", "cdc-bridge")
    assert service["spec"]["clusterIP"] == "None" and spec["serviceName"] == service["metadata"]["name"]
    assert [p["port"] for p in service["spec"]["ports"]] == [9108]


def test_kubernetes_config_and_mappings_examples_are_valid(tmp_path: Path) -> None:
    from cdc_bridge.config import load_config
    from cdc_bridge.mapping.loader import load_mappings

    config = [d for _, d in kubernetes_objects() if d.get("kind") == "ConfigMap" and "bridge.yaml" in d["data"]]
    (cm,) = config
    (tmp_path / "bridge.yaml").write_text(cm["data"]["bridge.yaml"])
    cfg = load_config(tmp_path / "bridge.yaml", env={"CDC_BRIDGE__SOURCE__PASSWORD": "x"})
    assert cfg.http.port == 9108

    mappings = the_object_named("ConfigMap", "cdc-bridge-mappings")
    mdir = tmp_path / "mappings"
    mdir.mkdir()
    for key, text in mappings["data"].items():
        (mdir / key).write_text(text)
    assert load_mappings(mdir).aggregates


def the_object_named(kind: str, name: str) -> dict[str, Any]:
    for _, doc in kubernetes_objects():
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} under deploy/kubernetes")


def test_scale_out_workers_statefulset_and_ingest_patch() -> None:
    workers = the_object_named("StatefulSet", "cdc-bridge-worker")
    spec = workers["spec"]
    assert spec["replicas"] >= 2 and spec["podManagementPolicy"] == "Parallel"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["cdc-bridge"] and container["args"][0] == "worker"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/var/lib/cdc-bridge"] in claims
    bridge_selector = the_object_named("StatefulSet", "cdc-bridge")["spec"]["selector"]["matchLabels"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert not all(pod_labels.get(k) == v for k, v in bridge_selector.items()), "the bridge's selector matches workers"
    service = the_object_named("Service", "cdc-bridge-worker")
    assert service["spec"]["selector"].items() <= pod_labels.items() and spec["serviceName"] == "cdc-bridge-worker"
    (patch,) = load_yaml_docs(KUBERNETES / "scale-out" / "ingest-patch.yaml")
    (c,) = patch["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["cdc-bridge"] and c["args"][0] == "ingest"
    (kust,) = load_yaml_docs(KUBERNETES / "scale-out" / "kustomization.yaml")
    assert "../" in kust["resources"]


def test_compose_scale_out_file() -> None:
    (doc,) = load_yaml_docs(COMPOSE_FILE.parent / "docker-compose.scale-out.yml")
    services = doc["services"]
    assert services["bridge"]["profiles"] == ["embedded"], "the embedded bridge would fence ingest"
    assert services["ingest"]["command"][0] == "ingest" and services["worker"]["command"][0] == "worker"
    assert "bridge" in services["ingest"]["networks"]["default"]["aliases"]
    (prom,) = load_yaml_docs(PROMETHEUS)
    assert any(sd["names"] == ["worker"] for job in prom["scrape_configs"] for sd in job.get("dns_sd_configs", []))
