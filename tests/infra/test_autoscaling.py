"""Autoscaling, statically: KEDA scales the engine Deployment on the vLLM queue (metric names the
installed vLLM declares, the series the ServiceMonitor makes, the cluster's Prometheus), a
scale-down never drops a request in flight (the engine drains before it is killed, and the
scale-down window is longer than that), and the GPU node group can follow (every GPU pod fits
one of its nodes, and its maximum has room for all of them at once).
tests/inference/test_prometheus.py runs the ScaledObject's queries on a real Prometheus."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import hcl2

from tests.infra import tfparse
from tests.infra.deploytools import (
    K8S,
    K8S_VERSION,
    NAMESPACE,
    find,
    pod_spec,
    ray_pod_templates,
    render,
)
from tests.infra.test_monitoring import base_name, promql_metric_names, vllm_metric_names
from tests.infra.tfparse import TERRAFORM, blocks, resources, variable_defaults

PROD, DEV, TRAINING, CORPUS = (K8S / "overlays" / "prod", K8S / "overlays" / "dev",
                               K8S / "training", K8S / "corpus")
# Requests inside the engines (Little's law: the rate of their summed latencies) and those a
# step could not admit. vllm:num_requests_running is not one: vLLM samples it after a step has
# retired its finished requests, and a one-token classification never outlives its step.
QUEUE_METRICS = {"vllm:e2e_request_latency_seconds_sum", "vllm:num_requests_waiting"}


def _scaled_object() -> dict:
    return find(render(PROD), "ScaledObject", "engine")


def _triggers() -> dict[str, dict]:
    return {t["name"]: t for t in _scaled_object()["spec"]["triggers"]}


def _engine_main() -> dict:
    return pod_spec(find(render(PROD), "Deployment", "engine"))["containers"][0]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# --- the ScaledObject ------------------------------------------------------------------------


def test_scaled_object_targets_the_engine_deployment_alone() -> None:
    objects = render(PROD)
    scaled = find(objects, "ScaledObject", "engine")
    assert scaled["metadata"]["namespace"] == NAMESPACE
    target = scaled["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "engine"}
    find(objects, target["kind"], target["name"])  # the real Deployment, by that name
    # KEDA makes the HPA; a second one of ours for the same Deployment would fight it, and a
    # replica count in the manifest would reset the count at every apply.
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert all(h["spec"]["scaleTargetRef"]["name"] != "engine" for h in hpas)
    assert "replicas" not in find(objects, "Deployment", "engine")["spec"]
    # dev has no KEDA: one engine, and no ScaledObject that it could not serve.
    dev = render(DEV)
    assert not [o for o in dev if o["kind"] == "ScaledObject"]
    assert find(dev, "Deployment", "engine")["spec"]["replicas"] == 1


def _prometheus_address() -> str:
    """The in-cluster URL of kube-prometheus-stack's Prometheus as terraform/platform.tf
    installs it (the chart names the Service <release>-prometheus, port 9090)."""
    release = resources("helm_release")["kube_prometheus_stack"]
    assert release["chart"] == "kube-prometheus-stack"
    return (f"http://{release['name']}-prometheus.{release['namespace']}.svc.cluster.local"
            f":9090")


def test_scaled_object_queries_the_vllm_queue_of_these_engines() -> None:
    """Metric names that the installed vLLM declares, with the labels the ServiceMonitor
    "engine" gives the engines' series, on the cluster's Prometheus."""
    declared = vllm_metric_names()
    used: set[str] = set()
    for name, trigger in _triggers().items():
        assert trigger["type"] == "prometheus", name
        assert trigger["metricType"] == "AverageValue", name
        meta = trigger["metadata"]
        names = promql_metric_names(meta["query"])
        missing = {n for n in names if n not in declared and base_name(n) not in declared}
        assert names and not missing, f"{name}: not declared by vLLM: {missing}"
        used |= names
        selectors = re.findall(r"\{([^{}]*)\}", meta["query"])
        assert len(selectors) == len(names), meta["query"]
        for selector in selectors:
            assert dict(re.findall(r'(\w+)="([^"]*)"', selector)) == {
                "namespace": NAMESPACE, "job": "engine"}, meta["query"]
        assert meta["query"].startswith("sum("), "one number, not one per engine"
        assert meta["serverAddress"] == _prometheus_address()
        # An empty answer (no engine scraped) is an error, on which the HPA holds its count.
        assert meta["ignoreNullValues"] == "false"
    assert used == QUEUE_METRICS
    # job="engine" is what the ServiceMonitor's jobLabel takes from the engine Service.
    objects = render(PROD)
    monitor = find(objects, "ServiceMonitor", "engine")
    service = find(objects, "Service", "engine")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "engine"


def test_thresholds_scale_out_before_an_engine_is_full() -> None:
    triggers = _triggers()
    in_flight = float(triggers["engine-in-flight"]["metadata"]["threshold"])
    waiting = float(triggers["engine-queue"]["metadata"]["threshold"])
    # The mean number of requests in the engines over a window: the rate of the latency sum.
    assert re.fullmatch(
        r"sum\(rate\(vllm:e2e_request_latency_seconds_sum\{[^{}]*\}\[\d+m\]\)\)",
        triggers["engine-in-flight"]["metadata"]["query"])
    assert re.fullmatch(r"sum\(vllm:num_requests_waiting\{[^{}]*\}\)",
                        triggers["engine-queue"]["metadata"]["query"])
    # One engine admits at most ENGINE_MAX_NUM_SEQS sequences per step: a new engine is asked
    # for at half of that, before requests start to wait.
    max_num_seqs = int(_env(_engine_main())["ENGINE_MAX_NUM_SEQS"])
    assert 0 < in_flight <= max_num_seqs / 2
    # Requests wait only when every slot is taken: a short queue per engine is enough.
    assert 0 < waiting < in_flight
    spec = _scaled_object()["spec"]
    # Two at least: the PDB lets one go (node drain) while the other serves.
    assert spec["minReplicaCount"] >= 2
    pdb = find(render(PROD), "PodDisruptionBudget", "engine")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert spec["pollingInterval"] <= 30


def test_scaled_object_hpa_settings_are_valid_hpa_fields() -> None:
    """KEDA copies the ScaledObject's bounds and behaviour into an autoscaling/v2 HPA: as one,
    they validate strictly against the Kubernetes schemas."""
    import kubernetes_validate

    spec = _scaled_object()["spec"]
    hpa = {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-engine", "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": spec["scaleTargetRef"],
            "minReplicas": spec["minReplicaCount"], "maxReplicas": spec["maxReplicaCount"],
            "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
            "metrics": [{"type": "External", "external": {
                "metric": {"name": f"s{i}-prometheus"},
                "target": {"type": t["metricType"], "averageValue": t["metadata"]["threshold"]},
            }} for i, t in enumerate(spec["triggers"])],
        },
    }
    kubernetes_validate.validate(hpa, K8S_VERSION, strict=True)


# --- no request dropped on scale-down ----------------------------------------------------------


def _drain() -> tuple[int, int, int]:
    """(preStop sleep, vLLM --shutdown-timeout, terminationGracePeriodSeconds) of an engine."""
    spec = pod_spec(find(render(PROD), "Deployment", "engine"))
    main = spec["containers"][0]
    extra = _env(main)["ENGINE_EXTRA_ARGS"].split()
    shutdown = int(extra[extra.index("--shutdown-timeout") + 1])
    return (main["lifecycle"]["preStop"]["sleep"]["seconds"], shutdown,
            spec["terminationGracePeriodSeconds"])


def test_an_engine_finishes_its_requests_before_it_is_killed() -> None:
    """preStop: the gateways stop choosing the engine (they re-resolve the headless Service
    every health interval; CoreDNS answers live 5 s). SIGTERM: vLLM finishes what it holds for
    --shutdown-timeout (its default, 0, aborts), at least as long as a gateway waits for a call.
    Both, and vLLM's teardown, within the grace period."""
    from inference.gateway.settings import GatewaySettings

    pre_stop, shutdown, grace = _drain()
    gateway = find(render(PROD), "Deployment", "gateway")
    (config_ref,) = pod_spec(gateway)["containers"][0]["envFrom"]
    settings = find(render(PROD), "ConfigMap", config_ref["configMapRef"]["name"])["data"]
    request_timeout = float(settings.get("GATEWAY_REQUEST_TIMEOUT_S",
                                         GatewaySettings().request_timeout_s))
    health_interval = float(settings.get("GATEWAY_HEALTH_INTERVAL_S",
                                         GatewaySettings().health_interval_s))
    dns_ttl = 5
    assert pre_stop >= 2 * health_interval + dns_ttl
    assert shutdown >= request_timeout
    assert pre_stop + shutdown + 15 <= grace  # 15 s for vLLM to stop its engine process


def test_the_installed_vllm_has_the_shutdown_timeout_flag() -> None:
    """ENGINE_EXTRA_ARGS passes --shutdown-timeout to vLLM: an unknown flag would stop the
    engine from starting at all."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or spec.origin is None:
        import pytest

        pytest.skip("vllm is not installed in this environment")
    package = Path(spec.origin).parent
    candidates = [package / "engine" / "arg_utils.py", *package.rglob("*.py")]
    assert any('"--shutdown-timeout"' in p.read_text(errors="replace")
               for p in candidates if p.exists())


def test_scale_down_is_slower_than_an_engine_drains() -> None:
    behavior = _scaled_object()["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    down, up = behavior["scaleDown"], behavior["scaleUp"]
    _, _, grace = _drain()
    assert down["stabilizationWindowSeconds"] >= grace
    # One engine at a time, and the next only after the previous has had its whole grace period.
    assert down["policies"] == [{"type": "Pods", "value": 1,
                                 "periodSeconds": down["policies"][0]["periodSeconds"]}]
    assert down["policies"][0]["periodSeconds"] >= grace
    assert down["selectPolicy"] == "Min"
    assert up["stabilizationWindowSeconds"] < down["stabilizationWindowSeconds"]
    assert all(p["value"] >= 1 for p in up["policies"])


# --- the GPU node group follows ------------------------------------------------------------

# vCPUs, GiB of memory and NVIDIA GPUs of the GPU instance types (add a row to use another).
INSTANCE_SIZES = {
    "g4dn.xlarge": (4, 16, 1), "g4dn.2xlarge": (8, 32, 1), "g4dn.4xlarge": (16, 64, 1),
    "g5.xlarge": (4, 16, 1), "g5.2xlarge": (8, 32, 1), "g5.4xlarge": (16, 64, 1),
    "g6.xlarge": (4, 16, 1), "g6.2xlarge": (8, 32, 1), "g6.4xlarge": (16, 64, 1),
}


def _allocatable(vcpus: int, gib: int) -> tuple[float, float]:
    """What pods can request on such a node: EKS reserves CPU and about 1 GiB plus 11 MiB per
    pod for the kubelet and eviction; the DaemonSets (VPC CNI, kube-proxy, device plugin, node
    exporter) take a little more. Counted generously: 0.5 vCPU and 10 % + 1 GiB."""
    return vcpus - 0.5, gib * 0.9 - 1


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _gib(quantity: str) -> float:
    units = {"Gi": 1, "Mi": 1 / 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def _requests(spec: dict) -> tuple[float, float, int]:
    """A pod's effective (cpu, GiB, GPUs) request: the larger of its containers' sum and its
    largest init container."""
    def one(container: dict) -> tuple[float, float, int]:
        requests = container["resources"]["requests"]
        return (_cpu(requests["cpu"]), _gib(requests["memory"]),
                int(requests.get("nvidia.com/gpu", 0)))

    mains = [one(c) for c in spec["containers"]]
    inits = [one(c) for c in spec.get("initContainers", [])]
    total = tuple(sum(values) for values in zip(*mains, strict=True))
    return tuple(max([total[i], *(init[i] for init in inits)]) for i in range(3))  # type: ignore[return-value]


def _gpu_node_pods() -> dict[str, tuple[float, float, int]]:
    """Every pod that runs on the GPU node group, by name, with its requests."""
    pods = {
        "engine": _requests(pod_spec(find(render(PROD), "Deployment", "engine"))),
        "trainer": _requests(pod_spec(find(render(TRAINING), "Job", "finetune"))),
    }
    rayjob = find(render(CORPUS), "RayJob", "corpus-classify")
    for role, template in ray_pod_templates(rayjob).items():
        pods[f"corpus {role}"] = _requests(template["spec"])
    return pods


def _gpu_instance_types() -> set[str]:
    with (TERRAFORM / "example.tfvars").open() as f:
        example = hcl2.load(f, serialization_options=tfparse.OPTIONS)
    return set(variable_defaults()["gpu_instance_types"]) | set(example["gpu_instance_types"])


def test_every_gpu_pod_fits_a_gpu_node() -> None:
    """The cluster autoscaler adds a node only for a pending pod that a node of the group could
    hold: a pod larger than the instance type stays pending for ever."""
    pods = _gpu_node_pods()
    # The corpus head packs next to a worker, as the autoscaler may place them.
    worker, head = pods["corpus worker:gpu"], pods["corpus head"]
    pods["corpus worker:gpu + head"] = (worker[0] + head[0], worker[1] + head[1],
                                        worker[2] + head[2])
    for instance_type in sorted(_gpu_instance_types()):
        assert instance_type in INSTANCE_SIZES, f"add {instance_type} to INSTANCE_SIZES"
        vcpus, gib, gpus = INSTANCE_SIZES[instance_type]
        cpu, memory = _allocatable(vcpus, gib)
        for name, (want_cpu, want_memory, want_gpus) in pods.items():
            assert want_cpu <= cpu and want_memory <= memory and want_gpus <= gpus, (
                f"{name} ({want_cpu} CPU, {want_memory:.1f} GiB, {want_gpus} GPU) does not fit "
                f"a {instance_type} ({cpu} CPU, {memory:.1f} GiB allocatable, {gpus} GPU)")


def test_gpu_node_group_can_hold_every_gpu_pod_at_once() -> None:
    """One GPU pod per node: the engines at their maximum plus a rollout's surge, the corpus
    workers and the training Job all fit in the group's maximum size."""
    scaled = _scaled_object()["spec"]
    engine = find(render(PROD), "Deployment", "engine")
    surge = engine["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    gpu_pods = _gpu_node_pods()
    corpus_gpus = gpu_pods["corpus worker:gpu"][2] * find(
        render(CORPUS), "RayJob", "corpus-classify")["spec"]["rayClusterSpec"][
        "workerGroupSpecs"][0]["replicas"]
    trainer_gpus = gpu_pods["trainer"][2]
    needed = (scaled["maxReplicaCount"] + surge) * gpu_pods["engine"][2] + corpus_gpus + \
        trainer_gpus
    defaults = variable_defaults()
    with (TERRAFORM / "example.tfvars").open() as f:
        example = hcl2.load(f, serialization_options=tfparse.OPTIONS)
    for values in (defaults, example):
        assert values["gpu_max_size"] >= needed, (values["gpu_max_size"], needed)
        assert 0 <= values["gpu_min_size"] <= values["gpu_max_size"]
    group = blocks("module")["eks"]["eks_managed_node_groups"]["gpu"]
    assert group["min_size"] == "${var.gpu_min_size}"
    assert group["max_size"] == "${var.gpu_max_size}"
    # The cluster autoscaler is what turns pending GPU pods into nodes (and empty ones back).
    assert defaults["enable_cluster_autoscaler"] is True
    assert "cluster_autoscaler" in resources("helm_release")


def test_every_gpu_pod_selects_and_tolerates_the_gpu_node_group() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true",
                  "effect": "NoSchedule"}
    specs = [pod_spec(find(render(PROD), "Deployment", "engine")),
             pod_spec(find(render(TRAINING), "Job", "finetune"))]
    rayjob = find(render(CORPUS), "RayJob", "corpus-classify")
    specs += [t["spec"] for t in ray_pod_templates(rayjob).values()]
    for spec in specs:
        assert spec["nodeSelector"] == {"nodegroup": "gpu"}
        assert toleration in spec["tolerations"]
