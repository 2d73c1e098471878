"""`python -m loadtest run`: Locust headless against a gateway, then a summary (JSON + markdown),
a chart of latency and throughput over time, the gateway's memory before and after, and a
verdict against the service-level objectives."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import psutil
from tenacity import Retrying, retry_if_result, wait_fixed
from tqdm import tqdm

from loadtest.settings import LoadtestSettings

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CSV_PREFIX = "locust"
AGGREGATED = "Aggregated"


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1h30m' -> seconds, parsed by Locust itself (its --run-time
    syntax), so what passes here passes there. Raises ValueError for anything else."""
    # Importing the locust package monkey-patches the whole process for gevent, unless told
    # not to: this process runs threads and subprocesses of its own.
    with mock.patch.dict(os.environ, {"LOCUST_SKIP_MONKEY_PATCH": "1"}):
        from locust.util.timespan import parse_timespan
    try:
        return float(parse_timespan(text))
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (try 30s, 10m, 1h30m)") from None


# --- the gateway's memory --------------------------------------------------------------------

def pid_listening_on(port: int) -> int | None:
    """The process that listens on a local TCP port, None when there is none or it is not
    ours to see."""
    try:
        return next((c.pid for c in psutil.net_connections(kind="tcp") if _listens(c, port)),
                    None)
    except psutil.AccessDenied:  # where only root may list every socket: look at each process
        return next((p.pid for p in psutil.process_iter()
                     if any(_listens(c, port) for c in _sockets(p))), None)


def _listens(connection: Any, port: int) -> bool:
    return (connection.status == psutil.CONN_LISTEN and bool(connection.laddr)
            and connection.laddr.port == port)


def _sockets(process: psutil.Process) -> list:
    """A process's TCP sockets; none when they are not ours to see."""
    try:
        return process.net_connections(kind="tcp")
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return []


def rss_bytes(pid: int) -> int | None:
    """A process's resident memory in bytes; None when it is gone or not ours to see."""
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def local_port(host: str) -> int | None:
    """The port of a URL that points at this machine, else None (its memory is not ours to see)."""
    url = urlparse(host)
    if url.hostname not in ("127.0.0.1", "localhost", "0.0.0.0", "::1"):
        return None
    return url.port or (443 if url.scheme == "https" else 80)


@dataclass
class RssSampler:
    """Samples a process's resident memory every `interval_s` in a background thread."""

    pid: int | None
    interval_s: float = 2.0
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> int | None:
        value = rss_bytes(self.pid) if self.pid else None
        if value is not None:
            self.samples.append((time.time(), value))
        return value

    def __enter__(self) -> RssSampler:
        self.start_bytes = self.sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.end_bytes = self.sample()

    def report(self) -> dict:
        mib = lambda b: None if b is None else round(b / 2**20, 1)  # noqa: E731
        peak = max((b for _, b in self.samples), default=None)
        start, end = self.start_bytes, self.end_bytes
        # Growth over the second half tells a leak (still climbing) from warm-up and bounded
        # caches filling (flat by then).
        middle = self.samples[len(self.samples) // 2][1] if self.samples else None
        return {"pid": self.pid, "start_mib": mib(start), "end_mib": mib(end),
                "peak_mib": mib(peak), "middle_mib": mib(middle),
                "growth_mib": mib(end - start) if start is not None and end is not None else None,
                "second_half_growth_mib":
                    mib(end - middle) if middle is not None and end is not None else None,
                "per_minute_mib": self.per_minute()}

    def per_minute(self) -> list[float]:
        """RSS (MiB) at the first sample of each minute, for a compact time series."""
        if not self.samples:
            return []
        t0, seen, out = self.samples[0][0], set(), []
        for t, b in self.samples:
            if (minute := int((t - t0) // 60)) not in seen:
                seen.add(minute)
                out.append(round(b / 2**20, 1))
        return out


# --- reading Locust's CSV --------------------------------------------------------------------

def _num(value: str) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # "N/A" before the first answer
    return None if math.isnan(number) else number


def read_stats(csv_prefix: Path) -> dict[str, dict]:
    """Rows of `<prefix>_stats.csv` by request name (the total row is `Aggregated`)."""
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def read_history(csv_prefix: Path, name: str | None = AGGREGATED) -> list[dict]:
    """Rows of `<prefix>_stats_history.csv` for one request name (all rows for None), oldest
    first."""
    with open(f"{csv_prefix}_stats_history.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if name is None or row["Name"] == name]


def papers_per_s_history(csv_prefix: Path, batch_size: int) -> dict[int, float]:
    """Papers/s at each timestamp: every route's current requests/s times its papers per call
    (needs Locust's --csv-full-history, which writes a row per route)."""
    rates: dict[int, float] = {}
    for row in read_history(csv_prefix, None):
        if row["Name"] != AGGREGATED:
            stamp = int(row["Timestamp"])
            rates[stamp] = rates.get(stamp, 0.0) + (_num(row["Requests/s"]) or 0.0) * (
                papers_per_request(row["Name"], batch_size))
    return rates


def papers_per_request(name: str, batch_size: int) -> int:
    return batch_size if name.startswith("/v1/classify_papers") else 1


def _row_summary(row: dict, batch_size: int) -> dict:
    requests = int(row["Request Count"])
    failures = int(row["Failure Count"])
    return {
        "requests": requests,
        "failures": failures,
        "error_rate": failures / requests if requests else 0.0,
        "requests_per_s": _num(row["Requests/s"]) or 0.0,
        "papers_per_s": (_num(row["Requests/s"]) or 0.0)
        * papers_per_request(row["Name"], batch_size),
        "p50_ms": _num(row["50%"]),
        "p95_ms": _num(row["95%"]),
        "p99_ms": _num(row["99%"]),
        "mean_ms": _num(row["Average Response Time"]),
        "max_ms": _num(row["Max Response Time"]),
    }


def summarise(csv_prefix: Path, batch_size: int) -> dict:
    """Throughput, latency percentiles and failures, overall and per route, from the CSV."""
    rows = read_stats(csv_prefix)
    if AGGREGATED not in rows:
        raise RuntimeError(f"{csv_prefix}_stats.csv has no {AGGREGATED} row: did Locust run?")
    routes = {name: _row_summary(row, batch_size) for name, row in rows.items()
              if name != AGGREGATED}
    total = _row_summary(rows[AGGREGATED], batch_size)
    total["papers_per_s"] = sum(r["papers_per_s"] for r in routes.values())
    return {"total": total, "routes": routes}


# --- service-level objectives ---------------------------------------------------------------

def slo_violations(summary: dict, max_error_rate: float | None,
                   max_p95_ms: float | None, min_requests: int = 1) -> list[str]:
    total = summary["total"]
    broken = []
    if total["requests"] < min_requests:
        broken.append(f"only {total['requests']} requests completed (want >= {min_requests})")
    if max_error_rate is not None and total["error_rate"] > max_error_rate:
        broken.append(f"error rate {total['error_rate']:.4f} > {max_error_rate}")
    if max_p95_ms is not None and (total["p95_ms"] is None or total["p95_ms"] > max_p95_ms):
        broken.append(f"p95 {total['p95_ms']} ms > {max_p95_ms} ms")
    return broken


# --- report ------------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _route_order(cfg: dict) -> str:
    if cfg.get("route_order") == "alternate":
        return "each user alternating the two routes"
    return f"task weights single:batch = {cfg['single_weight']}:{cfg['batch_weight']}"


def summary_markdown(summary: dict) -> str:
    cfg, rss = summary["config"], summary["gateway_rss"]
    lines = [
        f"# Load test {summary['started_at']}",
        "",
        f"{cfg['users']} users (spawn rate {cfg['spawn_rate']}/s) for {cfg['duration']} against "
        f"`{cfg['host']}`; {_route_order(cfg)}, batch size {cfg['batch_size']}, cache busting "
        f"{'on' if cfg['cache_bust'] else 'off'}.",
        "",
        "| route | requests | failures | req/s | papers/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [*summary["routes"].items(), ("**all**", summary["total"])]
    for name, r in rows:
        lines.append(f"| {name} | {r['requests']} | {r['failures']} | "
                     f"{_fmt(r['requests_per_s'], 2)} | {_fmt(r['papers_per_s'], 2)} | "
                     f"{_fmt(r['p50_ms'], 0)} | {_fmt(r['p95_ms'], 0)} | {_fmt(r['p99_ms'], 0)} |")
    agreement = summary.get("label_agreement")
    lines += [
        "",
        f"- Error rate: {summary['total']['error_rate']:.4%}",
        f"- Gateway RSS (pid {rss['pid']}): start {_fmt(rss['start_mib'])} MiB, "
        f"half-way {_fmt(rss.get('middle_mib'))} MiB, end {_fmt(rss['end_mib'])} MiB, "
        f"peak {_fmt(rss['peak_mib'])} MiB; per minute: "
        + (", ".join(f"{v:g}" for v in rss.get("per_minute_mib") or []) or "n/a"),
    ]
    if agreement and agreement.get("answers"):
        lines.append(f"- Answers that match the dataset's label: {agreement['correct']} of "
                     f"{agreement['answers']} ({agreement['correct'] / agreement['answers']:.1%})")
    slo = summary["slo"]
    lines += ["", f"**SLO: {'PASS' if slo['passed'] else 'FAIL'}**"
              + ("" if slo["passed"] else ": " + "; ".join(slo["violations"])), ""]
    return "\n".join(lines)


def plot_history(csv_prefix: Path, png: Path, title: str, batch_size: int) -> None:
    """Latency percentiles and throughput (and users) over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_history(csv_prefix)
    if not rows:
        raise RuntimeError("no history rows to plot")
    t0 = int(rows[0]["Timestamp"])
    t = [int(r["Timestamp"]) - t0 for r in rows]
    fig, (lat, thr) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for column, style in (("50%", "-"), ("95%", "--"), ("99%", ":")):
        lat.plot(t, [_num(r[column]) for r in rows], style, label=f"p{column[:-1]}")
    lat.set_ylabel("latency (ms)")
    lat.legend(loc="upper left")
    lat.grid(alpha=0.3)
    lat.set_title(title)
    thr.plot(t, [_num(r["Requests/s"]) or 0 for r in rows], label="requests/s")
    papers = papers_per_s_history(csv_prefix, batch_size)
    thr.plot(t, [papers.get(int(r["Timestamp"]), 0.0) for r in rows], label="papers/s")
    thr.plot(t, [_num(r["Failures/s"]) or 0 for r in rows], color="tab:red", label="failures/s")
    thr.set_ylabel("per second")
    thr.set_xlabel("seconds since start")
    thr.grid(alpha=0.3)
    users = thr.twinx()
    users.plot(t, [int(r["User Count"]) for r in rows], color="tab:gray", alpha=0.5,
               label="users")
    users.set_ylabel("users")
    handles = thr.get_legend_handles_labels()[0] + users.get_legend_handles_labels()[0]
    thr.legend(handles=handles, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# --- the run -----------------------------------------------------------------------------------

@dataclass
class RunOptions:
    host: str
    users: int
    spawn_rate: float
    duration: str
    out_dir: Path
    settings: LoadtestSettings
    gateway_pid: int | None = None
    max_error_rate: float | None = 0.0
    max_p95_ms: float | None = None
    progress: bool = True
    # How long users may finish the requests in flight when the run time is up (Locust's
    # --stop-timeout); what is still unanswered then is not counted.
    stop_timeout_s: float = 30.0


def locust_command(opts: RunOptions, csv_prefix: Path, html: Path) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", opts.host, "--users", str(opts.users), "--spawn-rate", str(opts.spawn_rate),
        "--run-time", opts.duration,
        # Locust reads whole seconds only ("55.9" is refused): rounded up.
        "--stop-timeout", str(math.ceil(opts.stop_timeout_s)),
        "--csv", str(csv_prefix), "--csv-full-history", "--html", str(html), "--only-summary",
        "--exit-code-on-error", "0",  # failures are judged by the SLO check, not by Locust
    ]


def _locust_env(settings: LoadtestSettings) -> dict[str, str]:
    env = {f"LOADTEST_{name.upper()}": str(value)
           for name, value in settings.model_dump().items() if value is not None}
    env["LOADTEST_CACHE_BUST"] = "1" if settings.cache_bust else "0"
    return env


def _wait_with_progress(process: subprocess.Popen, seconds: float, desc: str,
                        progress: bool) -> int:
    """Wait until `process` exits, a bar filling up to `seconds` meanwhile (looked at once a
    second); its exit code."""
    with tqdm(total=round(seconds), unit="s", desc=desc, disable=not progress) as bar:
        begun = time.monotonic()

        def advance(_: object) -> None:
            bar.n = min(round(time.monotonic() - begun), bar.total)
            bar.refresh()

        waiting = Retrying(retry=retry_if_result(lambda code: code is None), wait=wait_fixed(1),
                           before_sleep=advance)
        return waiting(process.poll)


def run_load(opts: RunOptions) -> dict:
    """Run Locust, write everything under `opts.out_dir`, return the summary (with the SLO
    verdict under `slo`)."""
    seconds = parse_duration(opts.duration)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    csv_prefix, html = opts.out_dir / CSV_PREFIX, opts.out_dir / "report.html"
    labels_out = opts.out_dir / "label_agreement.json"
    settings = opts.settings.model_copy(update={"labels_out": labels_out})
    pid = opts.gateway_pid
    if pid is None and (port := local_port(opts.host)) is not None:
        pid = pid_listening_on(port)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    command = locust_command(opts, csv_prefix, html)
    with open(opts.out_dir / "locust.log", "wb") as log, RssSampler(pid) as rss:
        process = subprocess.Popen(command, env=os.environ | _locust_env(settings),
                                   stdout=log, stderr=subprocess.STDOUT)
        _wait_with_progress(process, seconds, f"locust {opts.users} users", opts.progress)
    if process.returncode != 0 or not Path(f"{csv_prefix}_stats.csv").exists():
        raise RuntimeError(f"locust exited with {process.returncode}; see "
                           f"{opts.out_dir / 'locust.log'}")
    summary = summarise(csv_prefix, settings.batch_size)
    summary |= {
        "started_at": started_at,
        "config": {"host": opts.host, "users": opts.users, "spawn_rate": opts.spawn_rate,
                   "duration": opts.duration, "duration_s": seconds,
                   "single_weight": settings.single_weight,
                   "batch_weight": settings.batch_weight, "route_order": settings.route_order,
                   "batch_size": settings.batch_size,
                   "cache_bust": settings.cache_bust, "split": settings.split},
        "gateway_rss": rss.report(),
        "label_agreement": json.loads(labels_out.read_text()) if labels_out.exists() else None,
        "files": {"csv_prefix": str(csv_prefix), "html": str(html),
                  "chart": str(opts.out_dir / "latency_throughput.png")},
    }
    violations = slo_violations(summary, opts.max_error_rate, opts.max_p95_ms)
    summary["slo"] = {"max_error_rate": opts.max_error_rate, "max_p95_ms": opts.max_p95_ms,
                      "passed": not violations, "violations": violations}
    plot_history(csv_prefix, opts.out_dir / "latency_throughput.png",
                 f"{opts.users} users against {opts.host}", settings.batch_size)
    (opts.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    (opts.out_dir / "summary.md").write_text(summary_markdown(summary))
    return summary
