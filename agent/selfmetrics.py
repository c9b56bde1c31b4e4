"""Vigil's own metrics (`vigil_*`), in one registry that /metrics exposes next to the host snapshot."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from agent import __version__

# `_created` series double the counter lines in the text format for a value nobody graphs.
disable_created_metrics()

_FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SelfMetrics:
    """Created once per daemon; components take the instruments they update from here."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(namespace="vigil", registry=r)
        self.build_info = Gauge("vigil_build_info", "Vigil version; always 1.", ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.start_time = Gauge("vigil_start_time_seconds", "Unix time the daemon started.", registry=r)
        self.loop_lag = Histogram(
            "vigil_event_loop_lag_seconds", "Delay of a periodic wake-up on the event loop.",
            buckets=_FAST_BUCKETS, registry=r,
        )
        self.job_runs = Counter(
            "vigil_scheduler_job_runs_total", "Scheduled job runs by outcome (success, error).",
            ["job", "outcome"], registry=r,
        )
        self.job_misses = Counter(
            "vigil_scheduler_job_misses_total",
            "Scheduled runs skipped because the previous run was still going or the loop was late.",
            ["job"], registry=r,
        )
        self.job_duration = Histogram(
            "vigil_scheduler_job_duration_seconds", "Run time of scheduled jobs.", ["job"],
            buckets=_FAST_BUCKETS, registry=r,
        )
        self.job_lateness = Histogram(
            "vigil_scheduler_job_lateness_seconds",
            "How late a scheduled job started compared with its scheduled time.", ["job"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=r,
        )
        self.remediations = Counter(
            "vigil_check_remediations_total", "Remediation actions run for failing checks, by outcome.",
            ["check", "action", "outcome"], registry=r,
        )
        self.store_queue = Gauge(
            "vigil_store_write_queue_length", "Writes waiting for the store's writer task.", registry=r
        )
        self.store_commit = Histogram(
            "vigil_store_commit_duration_seconds", "Time to run and commit one batch of writes.",
            buckets=_FAST_BUCKETS, registry=r,
        )
        self.store_batch = Histogram(
            "vigil_store_batch_size", "Writes per committed transaction.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000), registry=r,
        )
        self.store_errors = Counter(
            "vigil_store_write_errors_total", "Writes that failed (the caller got an error).", registry=r
        )
        self.http_requests = Counter(
            "vigil_http_requests_total", "API requests by route template, method and status code.",
            ["route", "method", "code"], registry=r,
        )
        self.http_duration = Histogram(
            "vigil_http_request_duration_seconds", "API request latency by route template and method.",
            ["route", "method"], buckets=_FAST_BUCKETS, registry=r,
        )
        self.auth_failures = Counter(
            "vigil_api_auth_failures_total", "Rejected API authentications by reason.", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "vigil_api_rate_limited_total", "Requests answered 429, by category.", ["category"], registry=r
        )
        self.collector_success = Gauge(
            "vigil_collector_success", "Whether the collector's last run succeeded (1) or not (0).",
            ["collector"], registry=r,
        )
        self.collector_duration = Gauge(
            "vigil_collector_duration_seconds", "Duration of the collector's last run.", ["collector"],
            registry=r,
        )
        self.collector_last_success = Gauge(
            "vigil_collector_last_success_timestamp_seconds", "Unix time of the collector's last success.",
            ["collector"], registry=r,
        )
        self.stuck_mounts = Gauge(
            "vigil_filesystem_stuck_mounts",
            "Mounts skipped because a statfs on them has not returned within the timeout.", registry=r,
        )
        self.reload_ok = Gauge(
            "vigil_config_last_reload_successful", "Whether the last config reload succeeded.", registry=r
        )
        self.reload_ts = Gauge(
            "vigil_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config reload.", registry=r,
        )
        self.config_version = Gauge(
            "vigil_config_version", "Id of the config version in effect.", registry=r
        )
        self.events_dropped = Counter(
            "vigil_events_dropped_total", "Events dropped for a subscriber that could not keep up.", registry=r
        )
