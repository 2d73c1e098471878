"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and the checker sees the
kind of import that would break them (lazy imports inside functions included)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def _lint(config: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS, "import-linter is not installed (pip install -e .[dev])"
    args = [LINT_IMPORTS, "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    result = _lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_checker_sees_lazy_imports_of_torch(tmp_path: Path) -> None:
    # training imports torch only inside functions; a contract forbidding it must break.
    config = tmp_path / "contracts.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    training\n    model_contract\n"
        "include_external_packages = True\n\n"
        "[importlinter:contract:1]\nname = training without torch\ntype = forbidden\n"
        "source_modules =\n    training.merge\nforbidden_modules =\n    torch\n"
    )
    result = _lint(config)
    assert result.returncode == 1
    assert "training.merge -> torch" in result.stdout


def test_the_gateway_command_runs_without_torch(base_model_dir: Path) -> None:
    # What `python -m inference gateway` imports, up to a started app (lifespan included: the
    # model directory read, the tokenizer loaded), in a fresh interpreter.
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "import inference.__main__  # noqa: F401 - the command's own module\n"
        "from inference.gateway.app import create_app\n"
        "from inference.gateway.settings import GatewaySettings\n"
        f"settings = GatewaySettings(model_dir={str(base_model_dir)!r},\n"
        "                           engine_urls=['http://127.0.0.1:9'])\n"
        "with TestClient(create_app(settings)) as client:\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules)\n"
        "print(heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
