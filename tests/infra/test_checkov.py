"""checkov on the Kubernetes sources, on the rendered overlays and on the Dockerfile: no
failed check. An exception is written next to what it exempts, with a one-line reason
(`checkov.io/skipN: CKV_...=reason` annotations in the manifests).

checkov's dependencies clash with the project's, so it lives in its own virtualenv:
    python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra.deploytools import K8S, ROOT, find, kustomize_text, ray_pod_templates, render

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

pytestmark = pytest.mark.skipif(
    not CHECKOV.exists(),
    reason="checkov not installed: python3 -m venv .venv-checkov && "
           ".venv-checkov/bin/pip install checkov",
)


def checkov(*args: str) -> dict:
    # --skip-download: no call to the vendor's API (offline; guidelines only).
    result = subprocess.run([str(CHECKOV), *args, "--skip-download", "--output", "json"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    report = json.loads(result.stdout)
    assert isinstance(report, dict), report  # one framework -> one report
    failed = [f"{c['check_id']} {c['resource']} {c['file_path']}: {c['check_name']}"
              for c in report["results"]["failed_checks"]]
    assert report["summary"]["failed"] == 0, "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    assert result.returncode == 0, result.stderr[-2000:]
    return report["summary"]


def test_checkov_kubernetes_sources() -> None:
    summary = checkov("--directory", str(K8S), "--framework", "kubernetes")
    assert summary["resource_count"] >= 20
    assert summary["passed"] >= 200


def test_checkov_rendered_overlays(tmp_path: Path) -> None:
    for name, path in (("prod", K8S / "overlays" / "prod"), ("dev", K8S / "overlays" / "dev"),
                       ("training", K8S / "training"), ("corpus", K8S / "corpus")):
        (tmp_path / f"{name}.yaml").write_text(kustomize_text(path))
    summary = checkov("--directory", str(tmp_path), "--framework", "kubernetes")
    assert summary["resource_count"] >= 40


def test_checkov_ray_pods_of_the_corpus_rayjob(tmp_path: Path) -> None:
    """checkov skips custom resources, so the RayJob's pod templates (head, GPU workers,
    submitter) go to it as the run-to-completion pods they are: one batch/v1 Job each, beside
    the NetworkPolicies of overlays/prod that select them (CKV2_K8S_6)."""
    rayjob = find(render(K8S / "corpus"), "RayJob", "corpus-classify")
    jobs = []
    for role, template in ray_pod_templates(rayjob).items():
        template = yaml.safe_load(yaml.safe_dump(template))
        template["spec"].setdefault("restartPolicy", "Never")
        jobs.append({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{rayjob['metadata']['name']}-{role.replace(':', '-')}",
                         "namespace": rayjob["metadata"]["namespace"],
                         "annotations": rayjob["metadata"].get("annotations", {})},
            "spec": {"template": template},
        })
    policies = [o for o in render(K8S / "overlays" / "prod") if o["kind"] == "NetworkPolicy"]
    (tmp_path / "ray.yaml").write_text(yaml.safe_dump_all(jobs + policies))
    summary = checkov("--directory", str(tmp_path), "--framework", "kubernetes")
    assert summary["resource_count"] >= len(jobs) + len(policies)
    assert summary["passed"] >= 200


def test_checkov_dockerfile() -> None:
    summary = checkov("--file", str(ROOT / "Dockerfile"), "--framework", "dockerfile")
    assert summary["passed"] >= 50
