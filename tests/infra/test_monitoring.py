"""Monitoring: the rule files pass promtool (syntax and unit tests), the scrape configs are
valid, the operator copy of the rules matches, and every metric name that the rules and the
dashboard use is one that the gateway and vLLM really expose.

    python tests/infra/test_monitoring.py --write-prometheusrule   # regenerate the CR copy
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
import yaml

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.infra.deploytools import MONITORING  # noqa: E402

ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "dashboards" / "paper-classifier.json"

# Series that Prometheus makes itself for every target; no exporter exposes them.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "atan2", "inf", "nan", "start", "end"}
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_info")


# --- metric names --------------------------------------------------------------------------


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression, found by regex: strings, label matchers, range and
    subquery brackets, grouping clauses and Grafana variables are cut out first; what remains
    that is an identifier not followed by "(" (a function call) and not a keyword is a name."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = re.findall(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()", text)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def rule_groups() -> list[dict]:
    return yaml.safe_load(ALERTS.read_text())["groups"]


def recorded_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict]):
        for panel in panels:
            yield from (t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def rule_exprs() -> list[str]:
    return [r["expr"] for g in rule_groups() for r in g["rules"]]


def metric_names_used() -> set[str]:
    """Every metric name that alerts.yml and the Grafana dashboard read from the exporters:
    names recorded by alerts.yml itself and Prometheus' synthetic series are left out."""
    names: set[str] = set()
    for expr in rule_exprs() + dashboard_exprs():
        names |= promql_metric_names(expr)
    return names - recorded_names() - SYNTHETIC


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_promql_name_extraction() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, route) (rate(a_seconds_bucket{route=~"/v1|x",'
            'status!="5.."}[5m]))) / on(instance) group_left(model) b:c_total offset 1h '
            '> bool 1e3 and vector(0.5) unless absent(up{job="engine"}) or x[$__rate_interval]')
    assert promql_metric_names(expr) == {"a_seconds_bucket", "b:c_total", "up", "x"}


def test_metric_names_used_are_the_contract_names() -> None:
    names = metric_names_used()
    gateway = {n for n in names if n.startswith("classifier_")}
    vllm = {n for n in names if n.startswith("vllm:")}
    assert names == gateway | vllm, names - gateway - vllm
    # Everything the alerts are about is read from the metrics (not only the dashboard).
    alert_names = set().union(*map(promql_metric_names, rule_exprs()))
    assert {"classifier_requests_total", "classifier_request_duration_seconds_bucket",
            "classifier_engines_healthy", "classifier_predictions_total",
            "classifier_engine_errors_total", "vllm:num_requests_waiting", "up"} <= alert_names
    # Every gateway metric of the contract is on the dashboard.
    assert {base_name(n) for n in gateway} == {
        "classifier_requests", "classifier_request_duration_seconds",
        "classifier_engine_duration_seconds", "classifier_in_flight_requests",
        "classifier_predictions", "classifier_cancer_probability", "classifier_engine_errors",
        "classifier_batch_size", "classifier_cache_requests", "classifier_engines_healthy",
        "classifier_model"}


def exposed_names(family_type: str, name: str) -> set[str]:
    """Sample names that prometheus_client exposes for a metric family."""
    return {
        "counter": {name + "_total", name + "_created"},
        "histogram": {name + "_bucket", name + "_sum", name + "_count", name + "_created"},
        "gauge": {name},
        "info": {name + "_info"},
    }.get(family_type, {name})


def test_gateway_metric_names_exist_in_the_gateway_code() -> None:
    from inference.gateway.metrics import GatewayMetrics

    registry = GatewayMetrics().registry
    exposed = set()
    for family in registry.collect():
        exposed |= exposed_names(family.type, family.name)
    used = {n for n in metric_names_used() if n.startswith("classifier_")}
    assert used <= exposed, used - exposed


@cache
def vllm_metric_names() -> set[str]:
    """Metric names (without sample suffixes) that the installed vLLM declares."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        pytest.skip("vllm is not installed in this environment")
    names = set()
    for path in Path(spec.origin).parent.rglob("*.py"):
        names |= set(re.findall(r'"(vllm:[a-z0-9_]+)"', path.read_text(errors="replace")))
    return names


def test_vllm_metric_names_exist_in_the_installed_vllm() -> None:
    declared = vllm_metric_names()
    used = {n for n in metric_names_used() if n.startswith("vllm:")}
    assert used
    missing = {n for n in used if n not in declared and base_name(n) not in declared}
    assert not missing, f"not declared by the installed vLLM: {sorted(missing)}"


# --- promtool --------------------------------------------------------------------------------


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in rule_groups())
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_rule_unit_tests() -> None:
    """Drift fires at a 0.7 cancer share and not at 0.55 or on a quiet hour; error rate,
    engine down and queue saturation fire on synthetic series (alerts.test.yml)."""
    result = run_promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    tested = {t["alertname"] for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
              for t in case.get("alert_rule_test", [])}
    assert {"ClassifierPredictionDrift", "ClassifierHighErrorRate", "ClassifierEngineDown",
            "ClassifierEngineQueueSaturated"} <= tested


def test_promtool_check_local_config() -> None:
    result = run_promtool("check", "config", str(MONITORING / "prometheus-local.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((MONITORING / "prometheus-local.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert targets == {"gateway": ["127.0.0.1:8080"], "engine": ["127.0.0.1:8000"]}


def test_kubernetes_scrape_config(tmp_path: Path) -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"gateway", "engine"}
    for name, job in jobs.items():
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["namespaces"]["names"] == ["paper-classifier"]
        assert f"app.kubernetes.io/component={name}" in sd["selectors"][0]["label"]
        keep = job["relabel_configs"][0]
        assert keep == {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": "http", "action": "keep"}
    # Debian's promtool is built without Kubernetes service discovery, so it rejects
    # kubernetes_sd_configs; check everything else with a static target in its place.
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    result = run_promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_drift_alert_compares_the_hourly_cancer_share_with_half() -> None:
    rules = {r.get("alert") or r["record"]: r for g in rule_groups() for r in g["rules"]}
    share = " ".join(rules["classifier:cancer_share:ratio_rate1h"]["expr"].split())
    assert share == ('sum(rate(classifier_predictions_total{label="cancer"}[1h])) / '
                     'sum(rate(classifier_predictions_total[1h]))')
    drift = " ".join(rules["ClassifierPredictionDrift"]["expr"].split())
    assert drift.startswith("abs(classifier:cancer_share:ratio_rate1h - 0.5) > 0.15")
    for rule in rules.values():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


# --- operator copy and dashboard -----------------------------------------------------------


def prometheus_rule_document() -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "paper-classifier", "namespace": "paper-classifier",
                     "labels": {"app.kubernetes.io/name": "paper-classifier",
                                "release": "kube-prometheus-stack"}},
        "spec": {"groups": rule_groups()},
    }


def test_prometheusrule_matches_alerts_yml() -> None:
    assert yaml.safe_load(PROMETHEUS_RULE.read_text()) == prometheus_rule_document(), \
        "prometheusrule.yaml is stale: python tests/infra/test_monitoring.py --write-prometheusrule"


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "paper-classifier"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Gateway", "vLLM engines"]
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"


# --- against the running gateway and engine --------------------------------------------------


def scrape(url: str) -> tuple[set[str], set[str]]:
    """(sample names, family names from # TYPE lines) of a /metrics page."""
    import httpx

    response = httpx.get(url + "/metrics", timeout=10)
    response.raise_for_status()
    samples, families = set(), set()
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            families.add(line.split()[2])
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return samples, families


def classify_one(gateway_url: str) -> None:
    import httpx

    paper = {"title": "Metric names: BRCA1 variants in hereditary breast cancer",
             "abstract": "We sequenced tumours of 120 carriers and report the mutation spectrum."}
    response = httpx.post(gateway_url + "/v1/classify_paper", json=paper, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["label"] in {"cancer", "non_cancer"}


@pytest.mark.integration
def test_every_referenced_metric_is_exposed(gateway_url: str, engine_url: str) -> None:
    # Labelled histograms have no samples before their first observation: classify once.
    classify_one(gateway_url)
    gateway_samples, gateway_families = scrape(gateway_url)
    engine_samples, engine_families = scrape(engine_url)
    missing = []
    for name in sorted(metric_names_used()):
        samples, families = ((engine_samples, engine_families) if name.startswith("vllm:")
                             else (gateway_samples, gateway_families))
        if name not in samples and base_name(name) not in families:
            missing.append(name)
    assert not missing, f"referenced but not exposed: {missing}"
    # And the strict form for what one classification must have produced.
    for name in ("classifier_requests_total", "classifier_request_duration_seconds_bucket",
                 "classifier_predictions_total", "classifier_model_info"):
        assert name in gateway_samples, name
    for name in ("vllm:num_requests_waiting", "vllm:e2e_request_latency_seconds_bucket",
                 "vllm:prompt_tokens_total"):
        assert name in engine_samples, name


@pytest.mark.integration
def test_rules_evaluate_on_a_real_prometheus(gateway_url: str, engine_url: str,
                                             tmp_path: Path) -> None:
    """prometheus-local.yml with the session's ports: both jobs are up and every recording and
    alerting rule evaluates without error against the real exposition."""
    import httpx

    from inference.local import free_port

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package `prometheus`)")
    classify_one(gateway_url)
    config = yaml.safe_load((MONITORING / "prometheus-local.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    ports = {"gateway": gateway_url, "engine": engine_url}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [ports[job["job_name"]].split("//", 1)[1]]}]
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    (tmp_path / "prometheus-local.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    port = free_port(9290)
    with open(tmp_path / "log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus-local.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, state = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                up = httpx.get(url + "/api/v1/query", params={"query": "up"}, timeout=2).json()
                groups = httpx.get(url + "/api/v1/rules", timeout=2).json()["data"]["groups"]
            except (httpx.HTTPError, ValueError, KeyError):
                continue
            state = {
                "up": {r["metric"]["job"]: r["value"][1] for r in up["data"]["result"]},
                "rules": {r["name"]: (r["health"], r.get("lastError", ""))
                          for g in groups for r in g["rules"]},
            }
            if len(state["up"]) == 2 and state["rules"] and all(
                    health != "unknown" for health, _ in state["rules"].values()):
                break
        assert state.get("up") == {"gateway": "1", "engine": "1"}, state
        assert len(state["rules"]) == sum(len(g["rules"]) for g in rule_groups())
        bad = {name: h for name, h in state["rules"].items() if h != ("ok", "")}
        assert not bad, bad
        share = httpx.get(url + "/api/v1/query", timeout=2, params={
            "query": "classifier:cancer_share:ratio_rate1h"}).json()["data"]["result"]
        if share:  # needs two scrapes that saw answers; NaN when no answer changed
            value = float(share[0]["value"][1])
            assert value != value or 0.0 <= value <= 1.0
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-prometheusrule"]:
        sys.exit(__doc__)
    header = ("# GENERATED from alerts.yml (the source of truth; tests/infra/test_monitoring.py"
              " fails when\n# the two differ). Regenerate: python tests/infra/test_monitoring.py"
              " --write-prometheusrule\n")

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(str, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))
    PROMETHEUS_RULE.write_text(header + yaml.dump(prometheus_rule_document(), Dumper=_Dumper,
                                                  sort_keys=False, width=100))
    print(f"wrote {PROMETHEUS_RULE}")
