"""python -m inference: run the engine, the gateway, both together, swap models, bulk-classify."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@app.command()
def engine(
    model: Path = typer.Option(None, help="Merged model directory (default: models/latest, "
                               "else the embedded base model)"),
    host: str = typer.Option(None, help="Bind address (default 127.0.0.1; env ENGINE_HOST)"),
    port: int = typer.Option(None, help="Port (default 8000; env ENGINE_PORT)"),
) -> None:
    """Start vLLM's OpenAI server for the model with platform-tuned arguments, wait until it
    serves, print where it listens, and stay in the foreground until stopped."""
    from inference import engine as eng
    from model_contract.layout import resolve_model_dir

    _log_setup()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = eng.EngineSettings(**overrides)
    model_dir = resolve_model_dir(model)
    process = eng.start(settings, model_dir)
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    url = f"http://{settings.host}:{settings.port}"
    try:
        waited = eng.wait_ready(url, settings.served_model_name, settings.ready_timeout_s, process)
        typer.echo(f"engine ready in {waited:.0f} s: {url}/v1 serving {model_dir}")
        raise typer.Exit(process.wait())
    except KeyboardInterrupt:
        process.terminate()
        process.wait(timeout=30)


@app.command()
def gateway() -> None:
    """Run the FastAPI gateway (settings from GATEWAY_* environment variables; see README)."""
    import uvicorn

    from inference.gateway.app import create_app
    from inference.gateway.logs import configure_logging
    from inference.gateway.settings import GatewaySettings

    settings = GatewaySettings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, access_log=False, timeout_graceful_shutdown=10)


@app.command()
def serve(
    model: Path = typer.Option(None, help="Model directory (default: models/latest, else the "
                               "embedded base model)"),
    engine_port: int = typer.Option(8000, help="Engine port"),
    gateway_port: int = typer.Option(8080, help="Gateway port"),
) -> None:
    """Engine + gateway together on loopback; Ctrl-C stops both cleanly."""
    from inference.local import ServeState, start_local, stop_process
    from model_contract.layout import resolve_model_dir

    _log_setup()
    state = start_local(resolve_model_dir(model), engine_port, gateway_port)
    typer.echo(f"gateway: {state.gateway_url}  (docs {state.gateway_url}/docs)\n"
               f"engine:  {state.engines[0].url}\nCtrl-C stops both.")
    _wait_for_interrupt()
    state = ServeState.load()  # deploy-model may have replaced the engine meanwhile
    stop_process(state.gateway_pid)
    for proc in state.engines:
        stop_process(proc.pid)
    typer.echo("stopped")


@app.command()
def demo(
    model: Path = typer.Option(None, help="Model directory (default: models/latest, else the "
                               "embedded base model)"),
    processed_dir: Path = typer.Option(Path("data/processed"), help="Output of `python -m "
                                       "preprocessing`"),
    engine_port: int = typer.Option(8000, help="Engine port"),
    gateway_port: int = typer.Option(8080, help="Gateway port"),
    keep_running: bool = typer.Option(True, help="Leave engine + gateway up until Ctrl-C"),
) -> None:
    """Serve the model (engine + gateway), classify the test split over REST, print accuracy
    and sample answers, then keep both running with their URLs shown until Ctrl-C."""
    from inference.demo import run_demo
    from inference.local import ServeState, start_local, stop_process
    from model_contract.layout import resolve_model_dir

    _log_setup()
    state = start_local(resolve_model_dir(model), engine_port, gateway_port)
    try:
        run_demo(processed_dir, state.gateway_url)
        if keep_running:
            typer.echo(f"\ngateway: {state.gateway_url}  (docs {state.gateway_url}/docs)\n"
                       f"engine:  {state.engines[0].url}\nCtrl-C stops both.")
            _wait_for_interrupt()
    finally:
        state = ServeState.load()
        stop_process(state.gateway_pid)
        for proc in state.engines:
            stop_process(proc.pid)


def _wait_for_interrupt() -> None:
    """Sleep until Ctrl-C or SIGTERM. Both handlers are set explicitly: a shell starts
    background jobs with SIGINT ignored, and Python keeps an inherited 'ignore'."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command("deploy-model")
def deploy_model(
    model: Path = typer.Argument(..., help="Merged model directory to serve next"),
) -> None:
    """Zero-downtime swap on a running `serve`: start a new engine with MODEL, wait until it is
    ready, switch the gateway to it, let the old engine drain, then stop it."""
    from inference.deploy import api_key_from_env
    from inference.deploy import deploy_model as deploy
    from inference.local import ServeState

    _log_setup()
    typer.echo(json.dumps(deploy(model, ServeState.load(), api_key_from_env()), indent=2))


def _register_fetch_model() -> None:
    from model_registry.cli import fetch_command

    app.command("fetch-model", help="Download a published model version from the model "
                "bucket and verify every checksum (the engine's init container).")(
        fetch_command)


_register_fetch_model()


@app.command()
def classify(
    input_path: Path = typer.Argument(..., help="A folder of paper files (optionally "
                                      "Cancer/ and Non-Cancer/), or a CSV, JSONL or parquet "
                                      "file with title and abstract (and id) columns"),
    out: Path = typer.Option(Path("results/classified.parquet"), help="Output parquet"),
    url: str = typer.Option("http://127.0.0.1:8080", help="Gateway URL"),
    batch_size: int = typer.Option(16, help="Papers per request"),
    concurrency: int = typer.Option(4, help="Requests in flight"),
    api_key: str = typer.Option(None, envvar="LOADTEST_API_KEY", help="Gateway API key"),
    attempts: int = typer.Option(8, min=1, help="Tries per paper when the service is busy or "
                                 "down (429, 5xx, lost connection), with backoff up to 30 s"),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Keep the answers of a finished OUT and classify again "
        "only the papers it stored as transient failures (e.g. 'inference engine timed out' "
        "from an older version); without it a finished OUT is redone whole"),
) -> None:
    """Classify many papers through the gateway. Results are written chunk by chunk: kill it
    and run the same command again, and it resumes; each input appears once in OUT. Only a
    refusal of the paper itself (a 4xx such as 422) is stored as an error row; a busy or
    failing service is retried and, if it stays so, the run stops with exit code 3 and the
    same command picks up the rest."""
    import asyncio

    from inference.bulk import Backoff, BulkIncomplete, classify_file

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        table = asyncio.run(classify_file(input_path, out, url, batch_size, concurrency,
                                          api_key, Backoff(attempts=attempts), retry_failed))
    except BulkIncomplete as err:
        typer.echo(f"incomplete: {err}", err=True)
        raise typer.Exit(3) from None
    errors = sum(e is not None for e in table["error"].to_pylist())
    typer.echo(f"wrote {table.num_rows} rows to {out} ({errors} papers refused, with the "
               "reason in the error column)")
