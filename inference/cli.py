"""python -m inference: run the engine, the gateway, both together, swap models, bulk-classify.

engine is vLLM's OpenAI server alone, gateway the FastAPI front alone; serve and demo start both
on this machine; deploy-model swaps the model of a running serve; classify sends many papers
through a gateway; fetch-model copies a published model version from the model bucket. Options
also come from environment variables: ENGINE_* (inference/engine.py), GATEWAY_*
(inference/gateway/settings.py), BULK_* (inference/bulk_settings.py)."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from commandline.model_option import model_dir_from
from commandline.options import env_epilog, option, settings_from
from inference.bulk_settings import BulkSettings
from inference.corpus.settings import CorpusSettings
from inference.engine import EngineSettings
from inference.gateway.settings import GatewaySettings
from preprocessing.settings import PreprocessSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

# Options of several commands; those backed by a settings field take default and help from it.
ModelOpt = Annotated[Path | None, typer.Option(
    "--model", help="Model directory to serve (default: models/latest, else the embedded base "
    "model)")]
EnginePortOpt = Annotated[int | None, option(EngineSettings, "port", "--engine-port")]
GatewayPortOpt = Annotated[int | None, option(GatewaySettings, "port", "--gateway-port")]


def _ports(engine_port: int | None, gateway_port: int | None) -> tuple[int, int]:
    """The preferred engine and gateway ports: the options, else ENGINE_PORT / GATEWAY_PORT,
    else the fields' defaults."""
    return (settings_from(EngineSettings, port=engine_port).port,
            settings_from(GatewaySettings, port=gateway_port).port)


def _log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request drowns the bar


@app.command()
def engine(
    model: ModelOpt = None,
    host: Annotated[str | None, option(EngineSettings, "host")] = None,
    port: Annotated[int | None, option(EngineSettings, "port")] = None,
) -> None:
    """Start vLLM's OpenAI-compatible server for a model directory with arguments tuned to
    the platform (precision, CPU cores, KV cache, batch sizes: the other ENGINE_* variables),
    wait until it serves, print its URL, and stay in the foreground until Ctrl-C or SIGTERM.
    Reads the model directory; writes nothing (vLLM logs to the terminal)."""
    from inference import engine as eng
    from inference.local import stop_process

    _log_setup()
    settings = settings_from(EngineSettings, host=host, port=port)
    model_dir = model_dir_from(model)
    # Its own process group, stopped whole on every way out: vLLM's engine core is a child of
    # the server and would otherwise outlive a server that crashed or was killed.
    process = eng.start(settings, model_dir, detach=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = f"http://{settings.host}:{settings.port}"
    code = 0
    try:
        waited = eng.wait_ready(url, settings.served_model_name, settings.ready_timeout_s, process)
        typer.echo(f"engine ready in {waited:.0f} s: {url}/v1 serving {model_dir}")
        code = process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(process.pid, timeout_s=30)
    raise typer.Exit(code)


@app.command(epilog=env_epilog(GatewaySettings))
def gateway() -> None:
    """Run the FastAPI gateway; its settings are the GATEWAY_* environment variables below."""
    import uvicorn

    from inference.gateway.app import create_app
    from inference.gateway.logs import configure_logging

    settings = settings_from(GatewaySettings)
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, access_log=False, timeout_graceful_shutdown=10,
                timeout_keep_alive=settings.keep_alive_s)


@app.command()
def serve(
    model: ModelOpt = None,
    engine_port: EnginePortOpt = None,
    gateway_port: GatewayPortOpt = None,
) -> None:
    """Engine + gateway together on loopback (127.0.0.1), each on the first free port from
    the one given, the gateway's admin route on for deploy-model. Prints both URLs; Ctrl-C
    stops both cleanly. Writes the processes' logs and state (serve.json) under .run/."""
    from inference.local import start_local, stop_local

    _log_setup()
    state = start_local(model_dir_from(model), *_ports(engine_port, gateway_port))
    typer.echo(f"gateway: {state.gateway_url}  (docs {state.gateway_url}/docs)\n"
               f"engine:  {state.engines[0].url}\nCtrl-C stops both.")
    _wait_for_interrupt()
    stop_local()
    typer.echo("stopped")


@app.command()
def demo(
    model: ModelOpt = None,
    processed_dir: Annotated[Path | None, option(PreprocessSettings, "out_dir",
                                                 "--processed-dir")] = None,
    engine_port: EnginePortOpt = None,
    gateway_port: GatewayPortOpt = None,
    keep_running: Annotated[bool, typer.Option(
        help="Leave engine + gateway up after the demo until Ctrl-C (--no-keep-running stops "
        "them at once)")] = True,
) -> None:
    """Serve the model as `serve` does, classify the test split (PROCESSED_DIR/test.parquet)
    over REST, print accuracy, papers per second and sample answers, then keep both running
    with their URLs shown until Ctrl-C. Writes only logs and state under .run/."""
    from inference.bulk import BulkIncomplete
    from inference.demo import run_demo
    from inference.local import start_local, stop_local

    _log_setup()
    processed = settings_from(PreprocessSettings, out_dir=processed_dir).out_dir
    state = start_local(model_dir_from(model), *_ports(engine_port, gateway_port))
    try:
        try:
            run_demo(processed, state.gateway_url)
        except BulkIncomplete as err:
            typer.secho(f"the service did not answer every paper: {err}; see the engine's "
                        "log under .run/", fg="red", err=True)
            raise typer.Exit(3) from None
        if keep_running:
            typer.echo(f"\ngateway: {state.gateway_url}  (docs {state.gateway_url}/docs)\n"
                       f"engine:  {state.engines[0].url}\nCtrl-C stops both.")
            _wait_for_interrupt()
    finally:
        stop_local()


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
    model: Annotated[Path, typer.Argument(help="Merged model directory to serve next")],
) -> None:
    """Zero-downtime swap on a running `serve`: start a new engine with MODEL (ENGINE_*
    settings) on the next free port, wait until it is ready, switch the gateway to it through
    its admin route (with the first of GATEWAY_API_KEYS, if set), let the old engine drain,
    then stop it. Reads and updates .run/serve.json; prints the gateway's answer as JSON."""
    from inference.deploy import api_key_from_env
    from inference.deploy import deploy_model as deploy
    from inference.local import ServeState

    _log_setup()
    model_dir = model_dir_from(model, "MODEL")
    try:
        state = ServeState.load()
    except FileNotFoundError as err:
        typer.secho(str(err), fg="red", err=True)
        raise typer.Exit(2) from None
    if not state.gateway_running():
        typer.secho(f"the gateway `serve` started (pid {state.gateway_pid}) is not running; "
                    "start `python -m inference serve` again", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(deploy(model_dir, state, api_key_from_env()), indent=2))


def _register_fetch_model() -> None:
    from model_registry.cli import fetch_command

    app.command("fetch-model", help="Download a published model version "
                "(s3://BUCKET/models/NAME/VERSION/) from the model bucket into DEST, verify "
                "every sha256 checksum, then move it into place atomically; does nothing when "
                "DEST already holds that version. Prints DEST (the engine's init container).")(
        fetch_command)


_register_fetch_model()


@app.command()
def classify(
    input_path: Annotated[Path, typer.Argument(
        help="Papers to classify, in any of these formats (recognised from the content): "
        "PubMed XML (.xml, .xml.gz, efetch or baseline/update files), MEDLINE (.nbib, .txt), "
        "RIS, BibTeX (.bib), PubMed's CSV download, CSV/TSV/JSONL/Parquet with title and "
        "abstract columns (any capitalisation), or a folder of <ID:...>/Title:/Abstract: "
        "files; - reads standard input, and a pipe such as <(zcat x.gz) works too (copied "
        "beside OUT first)")],
    out: Annotated[Path, typer.Option(
        help="Output parquet: one row per input paper with label, probabilities, model and "
        "error columns")] = Path("results/classified.parquet"),
    url: Annotated[str | None, option(BulkSettings, "gateway_url", "--url")] = None,
    batch_size: Annotated[int | None, option(BulkSettings, "batch_size")] = None,
    concurrency: Annotated[int | None, option(BulkSettings, "concurrency")] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="LOADTEST_API_KEY", show_envvar=True,
        help="Gateway API key, sent as a bearer token (the same variable the load test "
        "reads)")] = None,
    attempts: Annotated[int | None, option(BulkSettings, "attempts")] = None,
    input_format: Annotated[str | None, typer.Option(
        "--format", help="Read the input as this format instead of recognising it: "
        "pubmed-xml, medline, ris, bibtex, csv, jsonl, parquet or folder")] = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", help="A table's column for a field, FIELD=COLUMN, e.g. --column "
        "title=Headline --column abstract=Summary (fields: id, title, abstract, pmid, doi, "
        "label); repeatable")] = None,
    export: Annotated[Path | None, typer.Option(
        help="Also write the results as CSV or RIS (by the suffix: .csv, .ris): each record's "
        "id, PMID, DOI, title and abstract with the label and probability added, ready to "
        "import into a spreadsheet, a screening tool or a reference manager (RIS: keyword "
        "paper-classifier:LABEL and a note)")] = None,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Keep the answers of a finished OUT and classify again only the "
        "papers it stored as transient failures (e.g. 'inference engine timed out' from an "
        "older version); without it a finished OUT is redone whole")] = False,
) -> None:
    """Classify many papers of INPUT_PATH through the gateway into the parquet OUT. Results
    are written chunk by chunk to OUT.parts/ beside it: kill it and run the same command again,
    and it resumes; each input appears once in OUT. Only a refusal of the paper itself (a 4xx
    such as 422) is stored as an error row; a busy or failing service is retried and, if it
    stays so, the run stops with exit code 3 and the same command picks up the rest."""
    import asyncio

    from inference.bulk import Backoff, BulkIncomplete, InputChanged, classify_file
    from inference.local import signals_interrupt
    from preprocessing.readers import as_file

    settings = settings_from(BulkSettings, gateway_url=url, batch_size=batch_size,
                             concurrency=concurrency, attempts=attempts)
    columns = _column_mapping(column)
    if export is not None and export.suffix.lower() not in (".csv", ".ris"):
        raise typer.BadParameter("the export format follows the suffix: .csv or .ris",
                                 param_hint="--export")
    if out.is_dir():
        raise typer.BadParameter(f"{out} is a folder; name the parquet file to write",
                                 param_hint="--out")
    _check_gateway(settings.gateway_url)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # SIGTERM too unwinds the block, so the copy of a pipe does not outlive the run.
        with signals_interrupt(), as_file(input_path, out.parent) as path:
            result = asyncio.run(classify_file(
                path, out, settings.gateway_url, settings.batch_size, settings.concurrency,
                api_key, Backoff(attempts=settings.attempts), retry_failed, input_format,
                columns))
    except BulkIncomplete as err:
        typer.echo(f"incomplete: {err}", err=True)
        raise typer.Exit(3) from None
    except (InputChanged, ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err), param_hint="INPUT_PATH") from None
    except RuntimeError as err:  # the gateway refused the requests themselves (401, 404, 422)
        typer.secho(f"refused: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(result.summary())
    typer.echo(f"wrote {result.table.num_rows} rows to {out}")
    if export is not None:
        from inference.exports import export_results

        typer.echo(f"wrote {export_results(result.inputs, result.table, export)}")


def _check_gateway(url: str) -> None:
    """Raises typer.BadParameter when nothing answers at URL at all (no connection, not a URL):
    a wrong --url is not a transient failure worth minutes of retries. Any HTTP answer will do
    here; a refusal of the requests themselves is reported when they are sent."""
    import httpx

    try:
        httpx.get(f"{url}/healthz", timeout=10)
    except (httpx.TransportError, httpx.InvalidURL) as err:
        raise typer.BadParameter(
            f"no gateway answers at {url} ({type(err).__name__}: {err}); start one (python -m "
            "inference serve prints its URL) or point --url / BULK_GATEWAY_URL at it",
            param_hint="--url") from None


@app.command()
def corpus(
    source: Annotated[str, typer.Argument(
        help="Records to classify: a file or folder (any format `classify` reads: PubMed XML "
        ".gz baseline files, MEDLINE, RIS, BibTeX, CSV/TSV/JSONL/Parquet) or an S3 URI of one "
        "(s3://bucket/prefix, copied locally first)")],
    out: Annotated[str, typer.Argument(
        help="Output folder or S3 URI: Parquet parts under OUT/model=VERSION/, one row per "
        "record with its identifiers, label, probabilities, model and prompt version")],
    address: Annotated[str | None, option(CorpusSettings, "address")] = None,
    model_dir: Annotated[Path | None, option(CorpusSettings, "model_dir")] = None,
    num_actors: Annotated[int | None, option(CorpusSettings, "num_actors")] = None,
    batch_size: Annotated[int | None, option(CorpusSettings, "batch_size")] = None,
    gpus_per_actor: Annotated[float | None, option(CorpusSettings, "gpus_per_actor")] = None,
    input_format: Annotated[str | None, typer.Option(
        "--format", help="Read the input as this format instead of recognising it")] = None,
    column: Annotated[list[str] | None, typer.Option(
        "--column", help="A table's column for a field, FIELD=COLUMN (repeatable)")] = None,
) -> None:
    """Classify a whole literature on Ray Data: the model runs in process in NUM_ACTORS Ray
    actors (vLLM's offline engine, configured as the served engine, reading papers exactly as
    the gateway does), no HTTP hop. Each batch is written as a Parquet part as it finishes:
    kill the run and start the same command again, and it skips the records already in OUT
    (each record is written once). Local Ray by default; --address points at a cluster."""
    from inference.bulk import InputChanged
    from inference.engine import EngineSettings

    try:  # Ray and vLLM: the engine image and `make setup` have them, the gateway image not
        from inference.corpus.run import run_corpus
    except ImportError as err:
        raise typer.BadParameter(f"corpus runs need Ray and vLLM ({err}); install the project "
                                 "with the corpus and serve-cpu (or serve-gpu) extras") from None
    _log_setup()
    settings = settings_from(CorpusSettings, address=address, model_dir=model_dir,
                             num_actors=num_actors, batch_size=batch_size,
                             gpus_per_actor=gpus_per_actor)
    settings.model_dir = model_dir_from(settings.model_dir, "--model-dir (env CORPUS_MODEL_DIR)")
    try:
        result = run_corpus(source, out, settings, EngineSettings(), input_format,
                            _column_mapping(column))
    except (InputChanged, ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err), param_hint="SOURCE") from None
    typer.echo(result.summary())


def _column_mapping(pairs: list[str] | None) -> dict[str, str] | None:
    """`["title=Headline"]` -> `{"title": "Headline"}`. Raises typer.BadParameter."""
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise typer.BadParameter(f"--column wants FIELD=COLUMN, got {pair!r}")
        mapping[field.strip()] = column.strip()
    return mapping
