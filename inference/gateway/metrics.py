"""The gateway's Prometheus metrics, on a registry of its own (one per app, so tests and
model swaps never collide on the process-wide default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "classifier_requests", "HTTP requests by route and status", ["route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "classifier_request_duration_seconds", "Whole request latency", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.engine_duration = Histogram(
            "classifier_engine_duration_seconds", "Latency of one engine call",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge(
            "classifier_in_flight_requests", "HTTP requests being served", registry=r
        )
        self.predictions = Counter(
            "classifier_predictions", "Answers by label", ["label"], registry=r
        )
        self.cancer_probability = Histogram(
            "classifier_cancer_probability", "Cancer probability of each answer (drift signal)",
            buckets=tuple(i / 10 for i in range(1, 11)), registry=r,
        )
        self.engine_errors = Counter(
            "classifier_engine_errors", "Failed engine calls by kind", ["kind"], registry=r
        )
        self.rereads = Counter(
            "classifier_rereads", "Papers read a second time, longer, because the capped "
            "read was unsure", registry=r,
        )
        self.batch_size = Histogram(
            "classifier_batch_size", "Papers per batch request",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )
        self.cache_requests = Counter(
            "classifier_cache_requests", "Result cache look-ups", ["result"], registry=r
        )
        self.engines_healthy = Gauge(
            "classifier_engines_healthy", "Engines that answered their last health probe",
            registry=r,
        )
        self.model_info = Info("classifier_model", "Served model and prompt", registry=r)
        # Zero-valued series exist from the start, so rates and alerts work before traffic.
        for label in ("cancer", "non_cancer"):
            self.predictions.labels(label)
        for result in ("hit", "miss"):
            self.cache_requests.labels(result)
        for kind in ("connect", "timeout", "http", "overload"):
            self.engine_errors.labels(kind)

    def set_model(self, model: str, model_version: str, prompt_version: str) -> None:
        self.model_info.info(
            {"model": model, "model_version": model_version, "prompt_version": prompt_version}
        )
