"""Terraform, statically (no terraform binary here): every file parses with python-hcl2,
modules and providers are pinned, variables and outputs keep their contract, the security
settings that matter are present, checkov passes, and k8s/overlays/prod takes its
Terraform-provided values under the Terraform output names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.infra import tfparse
from tests.infra.deploytools import find, kubectl, read_env_file, render
from tests.infra.tfparse import (
    BOOTSTRAP,
    PLACEHOLDER_ACCOUNT,
    ROOT,
    TERRAFORM,
    blocks,
    interpolate,
    locals_,
    resources,
    string_in_call,
    variable_defaults,
)

PROD = ROOT / "k8s" / "overlays" / "prod"
TRAINING = ROOT / "k8s" / "training"
EXACT = re.compile(r"^\d+\.\d+\.\d+$")
REQUIRED_OUTPUTS = {
    "cluster_name",
    "model_bucket_name",
    "engine_role_arn",
    "trainer_role_arn",
    "corpus_role_arn",
    "ci_role_arn",
    "ecr_repository_urls",
    "api_keys_secret_name",
    "region",
}
IMAGES = ["gateway", "engine", "engine-cpu", "trainer"]


@pytest.mark.parametrize(
    "path", tfparse.all_tf_files(), ids=lambda p: str(p.relative_to(TERRAFORM))
)
def test_every_tf_file_parses(path: Path) -> None:
    parsed = tfparse.load(path)
    assert parsed, f"{path} parsed to nothing"


def test_example_tfvars_parses_and_sets_declared_variables_only() -> None:
    import hcl2

    with (TERRAFORM / "example.tfvars").open() as f:
        values = hcl2.load(f, serialization_options=tfparse.OPTIONS)
    declared = blocks("variable")
    assert set(values) <= set(declared), set(values) - set(declared)
    required = {name for name, body in declared.items() if "default" not in body}
    assert required == {"github_repository"}
    assert required <= set(values)
    assert values["gpu_instance_types"] == ["g5.2xlarge"]
    assert values["github_repository"].count("/") == 1


@pytest.mark.parametrize("stack", [TERRAFORM, BOOTSTRAP], ids=["main", "bootstrap"])
def test_providers_and_terraform_are_pinned(stack: Path) -> None:
    terraform_blocks = [
        t for p in tfparse.tf_files(stack) for t in tfparse.load(p).get("terraform", [])
    ]
    assert len(terraform_blocks) == 1
    block = terraform_blocks[0]
    assert block["required_version"] == ">= 1.10.0"  # S3-native state locking
    providers = {k: v for item in block["required_providers"] for k, v in item.items()}
    assert providers["aws"]["source"] == "hashicorp/aws"
    assert providers["aws"]["version"].startswith("6.")
    for name, spec in providers.items():
        assert EXACT.match(spec["version"]), f"provider {name} not pinned exactly: {spec}"


def test_main_stack_state_is_remote_with_native_locking() -> None:
    (block,) = tfparse.load(TERRAFORM / "versions.tf")["terraform"]
    (backend,) = block["backend"]
    s3 = backend["s3"]
    assert s3["use_lockfile"] is True
    assert s3["encrypt"] is True
    assert s3["key"].endswith(".tfstate")
    assert "bucket" not in s3  # partial config: the bootstrap stack's bucket at init time


def test_modules_are_registry_modules_pinned_exactly() -> None:
    modules = blocks("module")
    assert set(modules) == {"vpc", "eks"}
    for name, body in modules.items():
        assert re.fullmatch(r"terraform-aws-modules/[a-z0-9-]+/aws", body["source"]), body
        assert EXACT.match(body["version"]), f"module {name} version {body['version']}"
    assert modules["vpc"]["source"] == "terraform-aws-modules/vpc/aws"
    assert modules["vpc"]["version"].split(".")[0] == "6"
    assert modules["eks"]["source"] == "terraform-aws-modules/eks/aws"
    assert modules["eks"]["version"].split(".")[0] == "21"
    # v21 input names (v20's cluster_name / cluster_version / cluster_addons are gone).
    eks = modules["eks"]
    for v21_input in ("name", "kubernetes_version", "addons", "endpoint_public_access"):
        assert v21_input in eks
    for v20_input in ("cluster_name", "cluster_version", "cluster_addons"):
        assert v20_input not in eks


@pytest.mark.parametrize("stack", [TERRAFORM, BOOTSTRAP], ids=["main", "bootstrap"])
def test_variables_have_description_type_and_validation(stack: Path) -> None:
    variables = blocks("variable", stack)
    assert variables
    for name, body in variables.items():
        assert body.get("description", "").strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
        if body["type"] not in {"${bool}", "bool", "${map(string)}", "map(string)"}:
            assert body.get("validation"), f"variable {name} has no validation block"


def test_variable_defaults_pass_their_own_regex_validations() -> None:
    """The regex() conditions written as can(regex("...", var.NAME)) accept the defaults
    (and example.tfvars' value of a variable without default)."""
    import hcl2

    with (TERRAFORM / "example.tfvars").open() as f:
        example = hcl2.load(f, serialization_options=tfparse.OPTIONS)
    checked = 0
    for stack in (TERRAFORM, BOOTSTRAP):
        defaults = {
            k: example.get(k) if v is None else v for k, v in variable_defaults(stack).items()
        }
        for name, body in blocks("variable", stack).items():
            for validation in body.get("validation", []):
                if f'var.{name} == ""' in validation["condition"] and defaults[name] == "":
                    continue  # empty means "derive it": the regex applies to other values
                for pattern in re.findall(
                    rf'can\(regex\("((?:[^"\\]|\\.)*)", var\.{name}\)\)', validation["condition"]
                ):
                    regex = pattern.encode().decode("unicode_escape")
                    assert re.search(regex, defaults[name]), (name, regex, defaults[name])
                    checked += 1
    assert checked >= 10


def test_outputs_keep_their_names() -> None:
    outputs = blocks("output")
    assert set(outputs) >= REQUIRED_OUTPUTS
    for name, body in outputs.items():
        assert body.get("description"), f"output {name} has no description"
    assert "for k, r in aws_ecr_repository.this" in outputs["ecr_repository_urls"]["value"]
    assert "aws_s3_bucket.models" in outputs["model_bucket_name"]["value"]
    assert blocks("output", BOOTSTRAP).keys() >= {"state_bucket_name", "region"}


def test_gpu_node_group_scales_from_zero_with_taint_and_label() -> None:
    eks = blocks("module")["eks"]
    groups = eks["eks_managed_node_groups"]
    assert set(groups) == {"system", "gpu"}
    gpu = groups["gpu"]
    assert gpu["ami_type"] == "AL2023_x86_64_NVIDIA"
    assert gpu["instance_types"] == "${var.gpu_instance_types}"
    # g5.2xlarge: the engine and the corpus worker (4 vCPU, 16 GiB) and the trainer (24 GiB)
    # do not fit a g5.xlarge (tests/infra/test_autoscaling.py).
    assert variable_defaults()["gpu_instance_types"] == ["g5.2xlarge"]
    assert gpu["min_size"] == "${var.gpu_min_size}"
    assert variable_defaults()["gpu_min_size"] == 0
    assert gpu["desired_size"] == "${max(var.gpu_min_size, var.gpu_desired_size)}"
    assert variable_defaults()["gpu_desired_size"] in (0, 1)
    assert gpu["max_size"] == "${var.gpu_max_size}"
    # The accelerator label makes the autoscaler wait for the device plugin on a new node
    # instead of adding another one meanwhile.
    assert gpu["labels"] == {"nodegroup": "gpu", "k8s.amazonaws.com/accelerator": "nvidia"}
    assert gpu["taints"] == {"gpu": "${local.gpu_taint}"}
    assert locals_()["gpu_taint"] == {
        "key": "nvidia.com/gpu",
        "value": "true",
        "effect": "NO_SCHEDULE",
    }
    assert groups["system"]["labels"] == {"nodegroup": "system"}
    # The autoscaler learns an empty group's label and taint from these ASG tags.
    tags = resources("aws_autoscaling_group_tag")["gpu_node_template"]["for_each"]
    assert tags["k8s.io/cluster-autoscaler/node-template/label/nodegroup"] == "gpu"
    assert tags["k8s.io/cluster-autoscaler/node-template/label/k8s.amazonaws.com/accelerator"] == (
        "nvidia"
    )
    assert tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] == (
        "${local.gpu_taint.value}:NoSchedule"
    )


def test_k8s_manifests_schedule_on_the_gpu_group_terraform_creates() -> None:
    """The engine and the training Job select and tolerate what the GPU group carries."""
    for path, kind, name in ((PROD, "Deployment", "engine"), (TRAINING, "Job", "finetune")):
        spec = find(render(path), kind, name)["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"nodegroup": "gpu"}
        assert {
            "key": "nvidia.com/gpu",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        } in spec["tolerations"]


def test_helm_releases_are_pinned_and_device_plugin_targets_gpu_nodes() -> None:
    releases = resources("helm_release")
    defaults = variable_defaults()
    assert {"nvidia_device_plugin", "cluster_autoscaler"} <= set(releases)
    for name, body in releases.items():
        if "repository" not in body:  # a chart of this repository (terraform/charts)
            assert body["chart"].startswith("${path.module}/charts/")
            continue
        version = body["version"]
        if version.startswith("${var."):
            version = defaults[version[len("${var.") : -1]]
        assert EXACT.match(version), f"helm_release {name} not pinned: {version}"
    plugin = releases["nvidia_device_plugin"]
    assert plugin["chart"] == "nvidia-device-plugin"
    values = plugin["values"][0]
    assert 'nodegroup = "gpu"' in values and "local.gpu_taint.key" in values


def test_keda_and_the_kuberay_operator_are_addons_that_can_be_turned_off() -> None:
    """KEDA (the engines' ScaledObject) and the KubeRay operator (the corpus RayJob), pinned
    like every add-on (test above), on the system nodes, watching the application namespace."""
    releases = resources("helm_release")
    defaults = variable_defaults()
    for name, chart, switch in (
        ("keda", "keda", "enable_keda"),
        ("kuberay_operator", "kuberay-operator", "enable_kuberay"),
    ):
        release = releases[name]
        assert release["chart"] == chart
        assert release["count"] == f"${{var.{switch} ? 1 : 0}}"
        assert defaults[switch] is True
        assert release["create_namespace"] is True
        assert release["depends_on"] == ["${module.eks}"]
        values = release["values"][0]
        assert 'nodeSelector = {nodegroup = "system"}' in values
        assert "var.k8s_namespace" in values
    assert releases["keda"]["repository"] == "https://kedacore.github.io/charts"
    assert (
        releases["kuberay_operator"]["repository"] == "https://ray-project.github.io/kuberay-helm/"
    )
    assert releases["kuberay_operator"]["namespace"] == "${local.kuberay_namespace}"
    assert "watchNamespace = [var.k8s_namespace]" in releases["kuberay_operator"]["values"][0]


def test_model_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    assert (
        resources("aws_s3_bucket_versioning")["models"]["versioning_configuration"][0]["status"]
        == "Enabled"
    )
    sse = resources("aws_s3_bucket_server_side_encryption_configuration")["models"]
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] in {"aws:kms", "AES256"}
    block = resources("aws_s3_bucket_public_access_block")["models"]
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[flag] is True
    policy = resources("aws_iam_policy_document", kind="data")["models_bucket"]
    tls = [s for s in policy["statement"] if s.get("sid") == "DenyInsecureTransport"][0]
    assert tls["effect"] == "Deny"
    assert tls["condition"][0] == {
        "test": "Bool",
        "variable": "aws:SecureTransport",
        "values": ["false"],
    }
    rule = resources("aws_s3_bucket_lifecycle_configuration")["models"]["rule"][0]
    assert rule["noncurrent_version_expiration"][0]["noncurrent_days"] == (
        "${var.noncurrent_version_retention_days}"
    )
    assert resources("aws_s3_bucket")["models"]["force_destroy"] is False


def test_state_bucket_is_private_encrypted_and_versioned() -> None:
    versioning = resources("aws_s3_bucket_versioning", BOOTSTRAP)["state"]
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    assert (
        resources("aws_s3_bucket_public_access_block", BOOTSTRAP)["state"][
            "restrict_public_buckets"
        ]
        is True
    )
    policy = resources("aws_iam_policy_document", BOOTSTRAP, kind="data")["state_bucket"]
    assert policy["statement"][0]["condition"][0]["variable"] == "aws:SecureTransport"


def test_ecr_repositories_are_immutable_and_scanned() -> None:
    assert variable_defaults()["ecr_repositories"] == IMAGES
    repo = resources("aws_ecr_repository")["this"]
    assert repo["for_each"] == "${toset(var.ecr_repositories)}"
    assert repo["name"] == "${var.project}/${each.key}"
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert repo["image_scanning_configuration"][0]["scan_on_push"] is True


def _statements(name: str) -> list[dict]:
    return resources("aws_iam_policy_document", kind="data")[name]["statement"]


def test_irsa_roles_are_least_privilege() -> None:
    engine = _statements("engine")
    assert {a for s in engine for a in s["actions"]} == {
        "s3:GetObject",
        "s3:ListBucket",
        "kms:Decrypt",
    }
    trainer_actions = {a for s in _statements("trainer") for a in s["actions"]}
    assert "s3:PutObject" in trainer_actions
    assert not any("Delete" in a or a.endswith("*") for a in trainer_actions)
    for stmt in engine + _statements("trainer"):
        if stmt["actions"] in (["s3:GetObject"], ["s3:PutObject", "s3:GetObject"]):
            assert stmt["resources"] == ["${local.models_prefix_arn}"]
    assert locals_()["models_prefix_arn"] == "${aws_s3_bucket.models.arn}/models/*"

    corpus = {s["sid"]: s for s in _statements("corpus")}
    assert set(corpus) == {"ReadModels", "ReadInput", "WriteOutput", "ListBucket", "UseKey"}

    assume = resources("aws_iam_policy_document", kind="data")["irsa_assume"]
    conditions = {c["variable"]: c for c in assume["statement"][0]["condition"]}
    assert conditions["${module.eks.oidc_provider}:aud"]["values"] == ["sts.amazonaws.com"]
    subjects = locals_()["irsa_subjects"]
    assert subjects["trainer"] == ["${var.k8s_namespace}:${var.trainer_service_account}"]
    assert variable_defaults()["model_reader_service_accounts"] == ["engine", "gateway"]


def test_corpus_role_reads_models_and_input_and_writes_only_output() -> None:
    """The corpus RayJob's role: read model versions and the input prefix, write the output
    prefix (with the reads and multipart aborts an S3 writer needs), delete nothing, in the
    existing model bucket, trusted by the service account k8s/corpus runs as."""
    statements = {s["sid"]: s for s in _statements("corpus")}
    assert statements["ReadModels"]["actions"] == ["s3:GetObject"]
    assert statements["ReadModels"]["resources"] == ["${local.models_prefix_arn}"]
    assert statements["ReadInput"]["actions"] == ["s3:GetObject"]
    assert statements["ReadInput"]["resources"] == ["${local.corpus_input_prefix_arn}"]
    assert set(statements["WriteOutput"]["actions"]) == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:AbortMultipartUpload",
    }
    assert statements["WriteOutput"]["resources"] == ["${local.corpus_output_prefix_arn}"]
    assert statements["ListBucket"]["actions"] == ["s3:ListBucket"]
    assert statements["ListBucket"]["resources"] == ["${aws_s3_bucket.models.arn}"]
    assert set(statements["UseKey"]["actions"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
    actions = [a for s in statements.values() for a in s["actions"]]
    assert not any("Delete" in a or a.endswith("*") for a in actions)
    # Only the output prefix is writable, and the exact "directory marker" keys above it that
    # pyarrow's create_dir(recursive=True) writes ("corpus/" for "corpus/output/").
    writable = [s for s in statements.values() if "s3:PutObject" in s["actions"]]
    assert writable == [statements["WriteOutput"]]
    (dynamic,) = resources("aws_iam_policy_document", kind="data")["corpus"]["dynamic"]
    (markers,) = dynamic["statement"]["content"]
    assert markers == {
        "sid": "WriteOutputFolderMarkers",
        "actions": ["s3:PutObject"],
        "resources": "${statement.value}",
    }
    assert locals_()["corpus_output_levels"] == (
        '${split("/", trimsuffix(var.corpus_output_prefix, "/"))}'
    )
    marker_arns = locals_()["corpus_output_marker_arns"]
    assert "range(1, length(local.corpus_output_levels))" in marker_arns  # the levels above
    assert marker_arns.endswith('slice(local.corpus_output_levels, 0, i))}/"]}')  # exact keys

    local = locals_()
    assert local["corpus_input_prefix_arn"] == (
        "${aws_s3_bucket.models.arn}/${var.corpus_input_prefix}*"
    )
    assert local["corpus_output_prefix_arn"] == (
        "${aws_s3_bucket.models.arn}/${var.corpus_output_prefix}*"
    )
    defaults = variable_defaults()
    assert defaults["corpus_input_prefix"] == "corpus/input/"
    assert defaults["corpus_output_prefix"] == "corpus/output/"
    for prefix in (defaults["corpus_input_prefix"], defaults["corpus_output_prefix"]):
        assert not prefix.startswith("models/")  # never the model versions
    assert local["irsa_subjects"]["corpus"] == [
        "${var.k8s_namespace}:${var.corpus_service_account}"
    ]
    assert defaults["corpus_service_account"] == "corpus"
    role = resources("aws_iam_role")["corpus"]
    assert role["assume_role_policy"] == (
        '${data.aws_iam_policy_document.irsa_assume["corpus"].json}'
    )
    policy = resources("aws_iam_role_policy")["corpus"]
    assert policy["policy"] == "${data.aws_iam_policy_document.corpus.json}"
    assert blocks("output")["corpus_role_arn"]["value"] == "${aws_iam_role.corpus.arn}"
    # The RayJob's Ray pods run as that account.
    rayjob = find(render(ROOT / "k8s" / "corpus"), "RayJob", "corpus-classify")
    cluster = rayjob["spec"]["rayClusterSpec"]
    for template in [
        cluster["headGroupSpec"]["template"],
        *(g["template"] for g in cluster["workerGroupSpecs"]),
    ]:
        assert template["spec"]["serviceAccountName"] == defaults["corpus_service_account"]


def test_ci_role_trusts_only_this_repository_through_github_oidc() -> None:
    (stmt,) = resources("aws_iam_policy_document", kind="data")["ci_assume"]["statement"]
    assert stmt["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    conditions = {c["variable"]: c for c in stmt["condition"]}
    aud = conditions["token.actions.githubusercontent.com:aud"]
    assert (aud["test"], aud["values"]) == ("StringEquals", ["sts.amazonaws.com"])
    sub = conditions["token.actions.githubusercontent.com:sub"]
    assert sub["values"] == (
        '${[for s in var.github_allowed_subjects : "repo:${var.github_repository}:${s}"]}'
    )
    assert variable_defaults()["github_allowed_subjects"] == [
        "ref:refs/heads/main",
        "ref:refs/tags/v*",
    ]
    provider = resources("aws_iam_openid_connect_provider")["github"]
    assert provider["url"] == "https://token.actions.githubusercontent.com"
    assert provider["client_id_list"] == ["sts.amazonaws.com"]
    # No IAM user and no access key anywhere: CI has no long-lived credential.
    for path in tfparse.all_tf_files():
        assert not re.search(r'resource\s+"aws_iam_(user|access_key)"', path.read_text())


def test_checkov_skips_carry_a_reason() -> None:
    skips = [
        line.strip()
        for path in tfparse.all_tf_files()
        for line in path.read_text().splitlines()
        if "checkov:skip" in line
    ]
    assert skips
    for line in skips:
        assert re.fullmatch(r"#checkov:skip=CKV2?_[A-Z0-9]+_\d+:\S.{15,}", line), line


def _checkov() -> str | None:
    venv = ROOT / ".venv-checkov" / "bin" / "checkov"
    if venv.exists():
        return str(venv)
    return shutil.which("checkov")


@pytest.mark.skipif(_checkov() is None, reason="checkov not installed (.venv-checkov)")
def test_checkov_reports_no_failed_check() -> None:
    """External registry modules are not downloaded (offline): checkov checks our own
    resources and the module calls, not the modules' internals."""
    result = subprocess.run(
        [_checkov(), "-d", str(TERRAFORM), "--framework", "terraform",
         "--download-external-modules", "false", "--skip-download", "--quiet", "-o", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    assert failed == [], [(c["check_id"], c["resource"]) for c in failed]
    assert sum(r["summary"]["passed"] for r in reports) > 100
    assert result.returncode == 0


# --------------------------------------------------------------------- Terraform -> k8s


def test_prod_overlay_env_keys_are_terraform_output_names() -> None:
    env = read_env_file(PROD / "terraform-outputs.env")
    assert env, "k8s/overlays/prod/terraform-outputs.env is empty"
    assert set(env) <= set(blocks("output")), set(env) - set(blocks("output"))
    assert {"model_bucket_name", "engine_role_arn", "trainer_role_arn", "corpus_role_arn"} <= set(
        env
    )


def test_prod_overlay_renders_the_terraform_values_where_they_belong() -> None:
    env = read_env_file(PROD / "terraform-outputs.env")
    objects = render(PROD)
    text = yaml.safe_dump_all(objects)
    for key, value in env.items():
        assert value in text, f"{key}={value} does not reach the rendered overlay"
    annotation = "eks.amazonaws.com/role-arn"
    sa = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert sa["engine"]["metadata"]["annotations"][annotation] == env["engine_role_arn"]
    assert sa["trainer"]["metadata"]["annotations"][annotation] == env["trainer_role_arn"]
    assert sa["corpus"]["metadata"]["annotations"][annotation] == env["corpus_role_arn"]
    registry = find(objects, "ConfigMap", "model-registry")
    assert registry["data"]["MODEL_BUCKET"] == env["model_bucket_name"]
    if "api_keys_secret_name" in env:
        secret = find(objects, "ExternalSecret", "gateway-api-keys")
        assert secret["spec"]["data"][0]["remoteRef"]["key"] == env["api_keys_secret_name"]


def test_prod_placeholders_have_the_shape_terraform_gives_the_real_values() -> None:
    """With account 000000000000 and the variables' defaults, Terraform's own naming
    expressions produce exactly the placeholders of terraform-outputs.env."""
    env = read_env_file(PROD / "terraform-outputs.env")
    bucket = interpolate(string_in_call(resources("aws_s3_bucket")["models"]["bucket"]))
    roles = resources("aws_iam_role")
    expected = {
        "model_bucket_name": bucket,
        "engine_role_arn": f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/"
        + interpolate(roles["engine"]["name"]),
        "trainer_role_arn": f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/"
        + interpolate(roles["trainer"]["name"]),
        "corpus_role_arn": f"arn:aws:iam::{PLACEHOLDER_ACCOUNT}:role/"
        + interpolate(roles["corpus"]["name"]),
        "api_keys_secret_name": interpolate(
            resources("aws_secretsmanager_secret")["api_keys"]["name"]
        ),
        "region": variable_defaults()["region"],
    }
    if env["model_bucket_name"].find(PLACEHOLDER_ACCOUNT) < 0:
        pytest.skip("terraform-outputs.env holds real values (no placeholder account)")
    for key, value in env.items():
        if key in expected:
            assert value == expected[key], key


ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z]{2}(-gov)?-[a-z]+-\d\.amazonaws\.com$")


@pytest.mark.parametrize("kustomization", [PROD, TRAINING], ids=["prod", "training"])
def test_image_names_are_the_ecr_repositories_terraform_creates(kustomization: Path) -> None:
    """Every image that the overlay pins lives in an ECR repository named
    <project>/<target> (aws_ecr_repository.this[target]), pinned by digest."""
    spec = yaml.safe_load((kustomization / "kustomization.yaml").read_text())
    project = variable_defaults()["project"]
    assert spec["images"]
    for image in spec["images"]:
        host, _, repository = image["newName"].partition("/")
        assert ECR_HOST.match(host), image
        assert repository == image["name"], image  # base name == ECR repository name
        prefix, _, target = repository.partition("/")
        assert prefix == project and target in IMAGES, image
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"]), image


def test_outputs_to_env_fills_the_overlay_from_terraform_output(tmp_path: Path) -> None:
    """terraform/outputs_to_env.py on a copy of k8s/: the rendered overlay then carries the
    (fake) Terraform values."""
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    env_file = tmp_path / "k8s" / "overlays" / "prod" / "terraform-outputs.env"
    comments = [line for line in env_file.read_text().splitlines() if line.startswith("#")]
    account, region = "123456789012", "eu-west-1"
    fake = {
        "region": region,
        "cluster_name": "paper-classifier-prod",
        "model_bucket_name": f"paper-classifier-models-{account}-{region}",
        "engine_role_arn": f"arn:aws:iam::{account}:role/paper-classifier-prod-engine",
        "trainer_role_arn": f"arn:aws:iam::{account}:role/paper-classifier-prod-trainer",
        "corpus_role_arn": f"arn:aws:iam::{account}:role/paper-classifier-prod-corpus",
        "ci_role_arn": f"arn:aws:iam::{account}:role/paper-classifier-prod-github-ci",
        "api_keys_secret_name": "paper-classifier/prod/gateway-api-keys",
        "ecr_repository_urls": {
            t: f"{account}.dkr.ecr.{region}.amazonaws.com/paper-classifier/{t}" for t in IMAGES
        },
    }
    assert set(fake) == REQUIRED_OUTPUTS
    outputs_json = tmp_path / "outputs.json"
    outputs_json.write_text(json.dumps({k: {"value": v} for k, v in fake.items()}))
    script = TERRAFORM / "outputs_to_env.py"
    result = subprocess.run(
        [sys.executable, str(script), "--outputs-json", str(outputs_json),
         "--env-file", str(env_file), "--print-gh-vars"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"gh variable set AWS_ROLE_ARN --body '{fake['ci_role_arn']}'" in result.stdout
    assert f"gh variable set EKS_CLUSTER_NAME --body '{fake['cluster_name']}'" in result.stdout
    written = read_env_file(env_file)
    assert written == {k: fake[k] for k in written}
    assert [line for line in env_file.read_text().splitlines() if line.startswith("#")] == (
        comments
    )
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(env_file.parent)], capture_output=True, text=True,
        timeout=120, check=True,
    ).stdout  # fmt: skip
    assert fake["engine_role_arn"] in rendered
    assert fake["corpus_role_arn"] in rendered
    assert f"MODEL_BUCKET: {fake['model_bucket_name']}" in rendered
    assert PLACEHOLDER_ACCOUNT + ":role" not in rendered

    # A key that is no Terraform output is refused.
    env_file.write_text(env_file.read_text() + "not_an_output=x\n")
    refused = subprocess.run(
        [sys.executable, str(script), "--outputs-json", str(outputs_json),
         "--env-file", str(env_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "not_an_output is not a Terraform output" in refused.stderr
