"""Command-line parsing of `python -m inference` (engine and bulk client mocked out): options
backed by a settings field show its help and default, and fall back to its environment
variable when left out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from inference.bulk import Backoff, BulkResult
from inference.bulk_settings import BulkSettings
from inference.cli import _ports, app
from inference.engine import EngineSettings
from preprocessing.readers import ReadReport

WIDE = {"COLUMNS": "400"}


def _option_line(command: str, flag: str) -> str:
    out = CliRunner().invoke(app, [command, "--help"], env=WIDE).output
    return next(line for line in out.splitlines() if line.lstrip("│ *").startswith(flag + " "))


@pytest.mark.parametrize(("command", "flag", "settings", "field"), [
    ("engine", "--port", EngineSettings, "port"),
    ("serve", "--engine-port", EngineSettings, "port"),
    ("classify", "--url", BulkSettings, "gateway_url"),
    ("classify", "--batch-size", BulkSettings, "batch_size"),
])
def test_help_and_default_come_from_the_settings_field(command: str, flag: str, settings: type,
                                                       field: str) -> None:
    line = _option_line(command, flag)
    info = settings.model_fields[field]
    prefix = settings.model_config["env_prefix"]
    assert f"{info.description} (env {prefix}{field.upper()})" in line
    assert f"[default: ({info.default})]" in line


@pytest.fixture
def bulk_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []

    async def fake_classify_file(input_path, out, url, batch_size, concurrency, api_key,
                                 backoff, reuse_output, fmt, columns):
        calls.append(dict(url=url, batch_size=batch_size, concurrency=concurrency,
                          api_key=api_key, attempts=backoff.attempts, reuse=reuse_output))
        if fmt or columns:
            calls[-1] |= {"fmt": fmt, "columns": columns}
        table = pa.table({"error": pa.array([None, "too long"], pa.string())})
        return BulkResult(table, ReadReport(format="csv", records=2), pd.DataFrame())

    monkeypatch.setattr("inference.bulk.classify_file", fake_classify_file)
    monkeypatch.setattr("inference.cli._check_gateway", lambda url: None)
    for name in ("BULK_GATEWAY_URL", "BULK_BATCH_SIZE", "BULK_CONCURRENCY", "BULK_ATTEMPTS",
                 "LOADTEST_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_classify_defaults_environment_and_options(bulk_calls: list[dict],
                                                   tmp_path: Path) -> None:
    out = str(tmp_path / "out.parquet")
    result = CliRunner().invoke(app, ["classify", "papers.csv", "--out", out])
    assert result.exit_code == 0, result.output
    assert bulk_calls[-1] == dict(url="http://127.0.0.1:8080", batch_size=16, concurrency=4,
                                  api_key=None, attempts=8, reuse=False)
    assert "wrote 2 rows" in result.output and "refused: 1" in result.output
    assert "read 2 records (csv)" in result.output

    env = {"BULK_BATCH_SIZE": "5", "BULK_GATEWAY_URL": "http://gw:9", "BULK_ATTEMPTS": "2",
           "LOADTEST_API_KEY": "k"}
    result = CliRunner().invoke(app, ["classify", "papers.csv", "--out", out], env=env)
    assert result.exit_code == 0, result.output
    assert bulk_calls[-1] == dict(url="http://gw:9", batch_size=5, concurrency=4, api_key="k",
                                  attempts=2, reuse=False)

    result = CliRunner().invoke(app, ["classify", "papers.csv", "--out", out, "--batch-size",
                                      "7", "--url", "http://other", "--retry-failed"], env=env)
    assert result.exit_code == 0, result.output
    assert bulk_calls[-1]["batch_size"] == 7 and bulk_calls[-1]["url"] == "http://other"
    assert bulk_calls[-1]["reuse"] is True

    result = CliRunner().invoke(app, ["classify", "papers.csv", "--out", out, "--format", "ris",
                                      "--column", "title=Headline"])
    assert result.exit_code == 0, result.output
    assert (bulk_calls[-1]["fmt"], bulk_calls[-1]["columns"]) == ("ris", {"title": "Headline"})
    result = CliRunner().invoke(app, ["classify", "papers.csv", "--export", "x.xlsx"], env=WIDE)
    assert result.exit_code == 2 and "the export format follows the suffix" in result.output


def test_a_url_where_no_gateway_answers_is_refused_at_once() -> None:
    import typer

    from inference.cli import _check_gateway

    with pytest.raises(typer.BadParameter, match="no gateway answers at http://127.0.0.1:9"):
        _check_gateway("http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(typer.BadParameter, match="no gateway answers at notaurl"):
        _check_gateway("notaurl")


def test_classify_says_in_one_line_what_no_retry_can_mend(
        bulk_calls: list[dict], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["classify", "papers.csv", "--out", str(tmp_path)],
                                env=WIDE)
    assert result.exit_code == 2 and "is a folder" in result.output and not bulk_calls

    async def refused(*args, **kwargs):
        raise RuntimeError("gateway answered 401: missing API key")

    monkeypatch.setattr("inference.bulk.classify_file", refused)
    result = CliRunner().invoke(app, ["classify", "papers.csv", "--out",
                                      str(tmp_path / "o.parquet")])
    assert result.exit_code == 2
    assert "refused: gateway answered 401: missing API key" in result.output


def test_classify_reads_standard_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple[Path, bytes]] = []

    async def fake_classify_file(input_path, *args):
        seen.append((input_path, input_path.read_bytes()))
        return BulkResult(pa.table({"error": pa.array([None], pa.string())}),
                          ReadReport(format="csv", records=1), pd.DataFrame())

    monkeypatch.setattr("inference.bulk.classify_file", fake_classify_file)
    monkeypatch.setattr("inference.cli._check_gateway", lambda url: None)
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["classify", "-", "--out", str(out)],
                                input=b"Title,Abstract\nA,B\n")
    assert result.exit_code == 0, result.output
    [(path, content)] = seen
    assert content == b"Title,Abstract\nA,B\n" and path.parent.parent == tmp_path
    assert not path.exists()  # the copy goes when the run ends


def test_classify_refuses_an_invalid_setting_by_name(bulk_calls: list[dict]) -> None:
    result = CliRunner().invoke(app, ["classify", "papers.csv", "--attempts", "0"], env=WIDE)
    assert result.exit_code == 2
    assert "attempts: Input should be greater than or equal to 1" in result.output
    assert not bulk_calls


def test_bulk_settings_match_the_backoff() -> None:
    backoff, description = Backoff(), BulkSettings.model_fields["attempts"].description
    assert BulkSettings().attempts == backoff.attempts
    assert f"from {backoff.initial_s:g} s up to {backoff.max_s:g} s" in description


def test_engine_port_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    started: list[EngineSettings] = []

    stopped: list[int] = []

    class FakeProcess:
        pid = 424242

        def wait(self, timeout: float | None = None) -> int:
            return 0

    def fake_start(settings: EngineSettings, model_dir: Path, detach: bool) -> FakeProcess:
        started.append(settings)
        return FakeProcess()

    monkeypatch.setattr("inference.engine.start", fake_start)
    monkeypatch.setattr("inference.local.stop_process", lambda pid, timeout_s: stopped.append(pid))
    monkeypatch.setattr("inference.engine.wait_ready", lambda *a: 1.0)
    monkeypatch.setattr("model_contract.layout.resolve_model_dir", lambda m: tmp_path)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    monkeypatch.delenv("ENGINE_HOST", raising=False)
    result = CliRunner().invoke(app, ["engine"], env={"ENGINE_PORT": "8123"})
    assert result.exit_code == 0, result.output
    assert started[-1].port == 8123 and "http://127.0.0.1:8123/v1" in result.output
    result = CliRunner().invoke(app, ["engine", "--port", "9000", "--host", "0.0.0.0"],
                                env={"ENGINE_PORT": "8123"})
    assert result.exit_code == 0, result.output
    assert (started[-1].host, started[-1].port) == ("0.0.0.0", 9000)
    assert stopped == [FakeProcess.pid] * 2


def test_serve_ports_option_over_environment_over_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_PORT", raising=False)
    monkeypatch.delenv("GATEWAY_PORT", raising=False)
    assert _ports(None, None) == (8000, 8080)
    monkeypatch.setenv("GATEWAY_PORT", "9090")
    assert _ports(None, None) == (8000, 9090)
    assert _ports(8001, 8081) == (8001, 8081)


def test_every_command_explains_itself() -> None:
    for command in ("engine", "gateway", "serve", "demo", "deploy-model", "classify",
                    "fetch-model"):
        result = CliRunner().invoke(app, [command, "--help"], env=WIDE)
        assert result.exit_code == 0, (command, result.output)
        assert "Show this message" in result.output


@pytest.mark.parametrize("args", [
    ["engine", "--model", "{folder}"],
    ["serve", "--model", "{folder}"],
    ["demo", "--model", "{folder}"],
    ["corpus", "{source}", "{out}", "--model-dir", "{folder}"],
    ["deploy-model", "{folder}"],
])
def test_a_folder_that_is_no_model_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    """Not another model in its place (models/latest was served for `--model models/base`)."""
    source = tmp_path / "papers.csv"
    source.write_text("title,abstract\nA,B\n")
    names = {"folder": str(tmp_path), "source": str(source), "out": str(tmp_path / "out")}
    result = CliRunner().invoke(app, [a.format(**names) for a in args], env=WIDE)
    assert result.exit_code == 2, result.output
    assert f"{tmp_path} is not a model directory (no config.json)" in result.output
    hint = "MODEL" if args[0] == "deploy-model" else args[-2]
    assert f"Invalid value for {hint}" in result.output and not (tmp_path / "out").exists()


def test_engine_command_stops_the_engine_core_when_the_server_dies(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, base_model_dir: Path) -> None:
    """vLLM's engine core is a child of the API server: when the server dies, the launcher
    must stop the core too, not leave it holding gigabytes and a core."""
    import signal
    import subprocess
    import sys
    import time

    from inference import engine as eng
    from inference.local import _is_gone

    core_pid = tmp_path / "core.pid"
    server = ("import subprocess, sys\n"
              "core = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
              f"open({str(core_pid)!r}, 'w').write(str(core.pid))\n"
              "sys.exit(9)\n")  # the server dies; its child, the core, lives on

    def start(settings, model_dir, log_path=None, detach=False, env=None):
        return subprocess.Popen([sys.executable, "-c", server], start_new_session=detach)

    def wait_ready(url, name, timeout_s, process):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (core_pid.exists() and core_pid.read_text()):
            time.sleep(0.05)
        return 0.0

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's SIGTERM handler
    monkeypatch.setattr(eng, "start", start)
    monkeypatch.setattr(eng, "wait_ready", wait_ready)
    result = CliRunner().invoke(app, ["engine", "--model", str(base_model_dir)])
    assert result.exit_code == 9, result.output
    pid = int(core_pid.read_text())
    deadline = time.monotonic() + 20  # SIGTERM is sent; give it the time to act
    while not _is_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _is_gone(pid), f"engine core {pid} outlived the server"


def test_gateway_help_lists_every_setting_with_its_default() -> None:
    from inference.gateway.settings import GatewaySettings

    out = CliRunner().invoke(app, ["gateway", "--help"], env={"COLUMNS": "1000"}).output
    for name in GatewaySettings.model_fields:
        assert f"GATEWAY_{name.upper()} (" in out, name
    assert "GATEWAY_ENGINE_URLS (http://127.0.0.1:8000)" in out


def test_deploy_model_refuses_a_serve_that_is_gone(monkeypatch: pytest.MonkeyPatch,
                                                   base_model_dir: Path) -> None:
    from inference import local

    gone = subprocess.Popen(["true"])
    gone.wait()
    monkeypatch.setattr(local.ServeState, "load", classmethod(
        lambda cls, path=None: cls("http://127.0.0.1:1", gone.pid, [])))
    result = CliRunner().invoke(app, ["deploy-model", str(base_model_dir)])
    assert result.exit_code == 2
    assert f"(pid {gone.pid}) is not running" in result.output


def test_deploy_model_without_a_running_serve_says_so_in_one_line(
        monkeypatch: pytest.MonkeyPatch, base_model_dir: Path, tmp_path: Path) -> None:
    from inference import local

    missing = tmp_path / "serve.json"
    load = local.ServeState.load.__func__
    monkeypatch.setattr(local.ServeState, "load", classmethod(
        lambda cls, path=None: load(cls, missing)))
    result = CliRunner().invoke(app, ["deploy-model", str(base_model_dir)])
    assert result.exit_code == 2  # a FileNotFoundError escaping would exit 1
    assert "not found: is `python -m inference serve` running?" in result.output
    assert "Traceback" not in result.output
