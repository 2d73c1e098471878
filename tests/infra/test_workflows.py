"""GitHub Actions workflows: schema-valid, every action pinned to a commit, least-privilege
permissions and concurrency groups, OIDC instead of stored keys, and the behaviour of the
release and retrain pipelines (their helper scripts are run here for real)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.infra.deploytools import kubectl, tool
from tests.infra.tfparse import ROOT, blocks

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml")) + sorted(WORKFLOWS_DIR.glob("*.yaml"))
IDS = [p.name for p in WORKFLOWS]
IMAGES = {"gateway", "engine", "engine-cpu", "trainer"}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")


def _load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _steps(doc: dict) -> list[dict]:
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def _run_text(doc: dict) -> str:
    return "\n".join(step.get("run", "") for step in _steps(doc))


def test_the_three_workflows_exist() -> None:
    assert {"ci.yml", "release.yml", "retrain.yml"} <= set(IDS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_schema_valid(path: Path) -> None:
    checker = tool("check-jsonschema")
    assert checker, "check-jsonschema is not installed"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    uses = [m for line in path.read_text().splitlines() if (m := USES.match(line))]
    assert uses, f"{path.name} uses no action"
    for match in uses:
        ref, rest = match.group(1), match.group(2)
        assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
        assert re.match(r"\s+#\s*v\d+\.\d+\.\d+\s*$", rest), f"{ref}: no '# vX.Y.Z' comment"


def test_each_action_uses_one_sha_everywhere() -> None:
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if m := USES.match(line):
                action, sha = m.group(1).split("@")
                seen.setdefault(action, set()).add(sha)
    assert {a: s for a, s in seen.items() if len(s) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_least_privilege_permissions_and_concurrency(path: Path) -> None:
    doc = _load(path)
    assert doc["permissions"] == {"contents": "read"}, "top level: read-only"
    assert doc["concurrency"]["group"]
    for name, job in doc["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"job {name} sets no permissions"
        assert set(perms.values()) <= {"read", "write", "none"}
        writes = {k for k, v in perms.items() if v == "write"}
        uses_aws = any(
            "configure-aws-credentials" in step.get("uses", "") for step in job.get("steps", [])
        )
        # The only write scope: an OIDC token, for exactly the jobs that assume the AWS role.
        assert writes == ({"id-token"} if uses_aws else set()), (name, perms)
        assert job.get("timeout-minutes"), f"job {name} has no timeout"


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_no_stored_aws_keys_and_no_credentials_left_in_checkouts(path: Path) -> None:
    text = path.read_text()
    for needle in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY"):
        assert needle not in text
    doc = _load(path)
    for step in _steps(doc):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        if "configure-aws-credentials" in step.get("uses", ""):
            assert step["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_inputs_never_reach_a_shell_through_template_expansion(path: Path) -> None:
    """`${{ inputs.x }}` inside `run:` is a script-injection hole: inputs go through env."""
    for step in _steps(_load(path)):
        assert "${{ inputs." not in step.get("run", ""), step.get("name")
        assert "${{ github.event." not in step.get("run", ""), step.get("name")


@pytest.mark.parametrize("path", WORKFLOWS, ids=IDS)
def test_run_scripts_are_valid_bash(path: Path, tmp_path: Path) -> None:
    for i, step in enumerate(_steps(_load(path))):
        if "run" not in step:
            continue
        script = re.sub(r"\$\{\{[^}]*\}\}", "PLACEHOLDER", step["run"])
        file = tmp_path / f"step{i}.sh"
        file.write_text(script)
        result = subprocess.run(["bash", "-n", str(file)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path.name} step {step.get('name', i)}: {result.stderr}"


def test_workflow_variables_are_terraform_outputs() -> None:
    """vars.* used by the workflows are exactly those that outputs_to_env.py prints from the
    Terraform outputs."""
    sys.path.insert(0, str(ROOT / "terraform"))
    try:
        import outputs_to_env
    finally:
        sys.path.pop(0)
    used = {v for p in WORKFLOWS for v in re.findall(r"vars\.([A-Z_]+)", p.read_text())}
    assert used == set(outputs_to_env.GH_VARIABLES)
    assert set(outputs_to_env.GH_VARIABLES.values()) <= set(blocks("output"))


def test_ci_runs_lint_and_the_ci_script_on_push_and_pull_request() -> None:
    doc = _load(WORKFLOWS_DIR / "ci.yml")
    assert {"push", "pull_request"} <= set(doc["on"])
    runs = _run_text(doc)
    assert "bash .ci/run" in runs
    assert "ruff check ." in runs
    assert doc["concurrency"]["cancel-in-progress"] is True


def test_release_builds_the_four_targets_and_deploys_by_digest() -> None:
    doc = _load(WORKFLOWS_DIR / "release.yml")
    assert doc["on"] == {"push": {"tags": ["v*"]}}
    assert doc["concurrency"]["cancel-in-progress"] is False
    images = doc["jobs"]["images"]
    assert set(images["strategy"]["matrix"]["target"]) == IMAGES
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", dockerfile, re.M | re.I))
    assert stages >= IMAGES, IMAGES - stages
    build = next(s for s in images["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["target"] == "${{ matrix.target }}"
    assert build["with"]["push"] is True
    assert build["with"]["tags"].endswith(":${{ github.ref_name }}")
    assert "${{ env.ECR_PREFIX }}/${{ matrix.target }}" in build["with"]["tags"]

    deploy = doc["jobs"]["deploy"]
    assert deploy["needs"] == "images"
    assert deploy["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    runs = "\n".join(s.get("run", "") for s in deploy["steps"])
    assert "aws ecr describe-images" in runs
    assert "cd k8s/overlays/prod && kustomize edit set image" in runs
    assert '"paper-classifier/gateway=${GATEWAY}" "paper-classifier/engine=${ENGINE}"' in runs
    assert "kubectl apply -k k8s/overlays/prod" in runs
    assert "rollout status deployment/engine" in runs
    # The digests it pins: <registry>/<ECR_PREFIX>/<target>@sha256:..., the names of the
    # ECR repositories (project/target) that Terraform creates.
    assert doc["env"]["ECR_PREFIX"] == "paper-classifier"
    assert "${REGISTRY}/${ECR_PREFIX}/${target}@${digest}" in runs


def test_retrain_trains_compares_and_only_then_rolls_out() -> None:
    doc = _load(WORKFLOWS_DIR / "retrain.yml")
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert {"base_model", "model_version", "min_accuracy"} <= set(inputs)
    assert inputs["model_version"]["required"] is True
    train, promote = doc["jobs"]["train"], doc["jobs"]["promote"]
    runs = "\n".join(s.get("run", "") for s in train["steps"])
    assert "cp -r k8s/training" in runs
    assert "manifest.json" in runs and "aws s3 cp" in runs
    assert "compare_metrics.py" in runs
    assert doc["env"]["METRIC"] == "metrics.after.accuracy"  # training/merge.py's manifest
    assert train["outputs"]["promote"] == "${{ steps.compare.outputs.promote }}"
    assert promote["needs"] == "train"
    assert promote["if"] == "needs.train.outputs.promote == 'true'"
    assert promote["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    promote_runs = "\n".join(s.get("run", "") for s in promote["steps"])
    assert 'bash k8s/rollout.sh "$MODEL_VERSION"' in promote_runs
    assert (ROOT / "k8s" / "rollout.sh").exists()


def test_retrain_render_step_sets_version_base_model_and_keeps_the_job_valid(
    tmp_path: Path,
) -> None:
    """Run the workflow's own `sed` on a copy of k8s/training and render it."""
    doc = _load(WORKFLOWS_DIR / "retrain.yml")
    step = next(
        s for s in doc["jobs"]["train"]["steps"] if s.get("name") == "Render the training Job"
    )
    sed = next(line.strip() for line in step["run"].splitlines() if line.strip().startswith("sed "))
    job = tmp_path / "training"
    shutil.copytree(ROOT / "k8s" / "training", job)
    (job / "training.env").write_text("PUBLISH_VERSION=v9.9.9\nBASE_MODEL=org/model-1b\n")
    subprocess.run(["bash", "-c", sed], check=True, env={**os.environ, "job": str(job)})
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(job)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config["data"] == {"PUBLISH_VERSION": "v9.9.9", "BASE_MODEL": "org/model-1b"}
    (container,) = next(o for o in objects if o["kind"] == "Job")["spec"]["template"]["spec"][
        "containers"
    ]
    script = container["args"][0]
    assert 'python -m training run --models "$BASE_MODEL"' in script
    assert '--version "$PUBLISH_VERSION"' in script
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]


def _fake_kubectl(tmp_path: Path, deployment: str | None, configmaps: dict[str, str]) -> dict:
    """A kubectl stand-in on PATH answering the two queries of deployed-model-version.sh."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    data = json.dumps({"deployment": deployment, "configmaps": configmaps})
    (bin_dir / "kubectl").write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"data = json.loads({data!r})\n"
        "args = sys.argv[1:]\n"
        "if 'deployment' in args:\n"
        "    if data['deployment'] is None:\n"
        "        sys.exit('Error from server (NotFound)')\n"
        "    print(data['deployment'], end='')\n"
        "elif 'configmap' in args:\n"
        "    name = args[args.index('configmap') + 1]\n"
        "    print(data['configmaps'][name], end='')\n"
    )
    (bin_dir / "kubectl").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_deployed_model_version_reads_the_hashed_configmap(tmp_path: Path) -> None:
    env = _fake_kubectl(
        tmp_path, "model-registry\nmodel-config-7g9h2k5m4t\ngateway-config-abc\n",
        {"model-config-7g9h2k5m4t": "v0.4.1"},
    )  # fmt: skip
    result = subprocess.run(
        ["bash", str(SCRIPTS / "deployed-model-version.sh"), "paper-classifier"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert result.stdout == "v0.4.1"


def test_deployed_model_version_is_empty_before_the_first_rollout(tmp_path: Path) -> None:
    env = _fake_kubectl(tmp_path, None, {})
    result = subprocess.run(
        ["bash", str(SCRIPTS / "deployed-model-version.sh")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "")


# ------------------------------------------------------------------ compare_metrics.py


def _compare(tmp_path: Path, candidate: dict, current: dict | None, minimum: str):
    cand = tmp_path / "candidate.json"
    cand.write_text(json.dumps(candidate))
    args = [sys.executable, str(SCRIPTS / "compare_metrics.py"), "--candidate", str(cand),
            "--min-accuracy", minimum]  # fmt: skip
    if current is not None:
        cur = tmp_path / "current.json"
        cur.write_text(json.dumps(current))
        args += ["--current", str(cur)]
    out = tmp_path / "github_output"
    out.write_text("")
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return result, outputs


def _manifest(accuracy: float) -> dict:
    """The shape training/merge.py writes: metrics.before / metrics.after / baselines."""
    return {
        "base_model": "smollm2-135m",
        "metrics": {
            "before": {"split": "test", "accuracy": 0.47},
            "after": {"split": "test", "accuracy": accuracy, "macro_f1": 0.9},
            "baselines": {"tfidf": {"accuracy": 0.935}},
        },
    }


@pytest.mark.parametrize(
    ("candidate", "current", "minimum", "promote"),
    [
        (0.96, 0.95, "0.935", "true"),  # better and above the floor
        (0.95, 0.95, "0.935", "false"),  # equal is not better
        (0.94, 0.95, "0.935", "false"),  # worse
        (0.93, None, "0.935", "false"),  # first version, below the floor
        (0.94, None, "0.935", "true"),  # first version, above the floor
        (0.97, 0.90, "0.98", "false"),  # better, but below the floor
    ],
)
def test_compare_metrics_decides(tmp_path, candidate, current, minimum, promote) -> None:
    result, outputs = _compare(
        tmp_path, _manifest(candidate), None if current is None else _manifest(current), minimum
    )
    assert result.returncode == 0, result.stderr
    assert outputs["promote"] == promote
    assert float(outputs["candidate_metric"]) == candidate
    assert outputs["current_metric"] == ("" if current is None else str(current))
    assert ("Promote" if promote == "true" else "Keep the deployed version") in (
        tmp_path / "summary.md"
    ).read_text()


def test_compare_metrics_refuses_unusable_manifests(tmp_path: Path) -> None:
    result, outputs = _compare(tmp_path, {"metrics": {"after": {"f1": 0.9}}}, None, "0.9")
    assert result.returncode == 2
    assert "metrics.after.accuracy" in result.stderr
    assert outputs == {}
    bad_current = {"metrics": {"after": {"accuracy": "high"}}}
    result, _ = _compare(tmp_path, _manifest(0.99), bad_current, "0.9")
    assert result.returncode == 2
    result, _ = _compare(tmp_path, _manifest(0.99), None, "93.5")
    assert result.returncode == 2
