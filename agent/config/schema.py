"""The one config schema. Every section a feature reads is declared here, with its defaults.

Unknown keys are errors (a typo must not be silently ignored), and secrets are `SecretStr`
so that dumps for the API and logs mask them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.alerting.config import AlertingConfig, MaintenanceConfig
from agent.checks import REGISTRY as CHECK_TYPES
from agent.checks.base import CheckConfig as CheckConfigBase
from agent.cleanup.config import CleanupConfig
from agent.config.durations import Duration
from agent.config.section import LabelSet, Pattern, Section, unique_names
from agent.logbook.config import LogFileConfig, LogStoreConfig
from agent.notify.config import NotificationsConfig
from agent.security.config import SecurityConfig
from agent.units.config import UnitConfig

# One model per check type, told apart by `type` (an unknown type names the known ones).
CheckUnion = Annotated[
    Union[tuple(cls.Config for cls in CHECK_TYPES.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="type"),
]

# node_exporter's defaults, so the same mounts and devices are reported as by node_exporter.
NODE_MOUNT_POINTS_EXCLUDE = r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
NODE_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    r"|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$"
)
NODE_DISKSTATS_DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"


def split_listen(value: str) -> tuple[str, int]:
    """Split host:port ([v6]:port too); raises ValueError naming the expected form."""
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
    if not match:
        raise ValueError(f"expected host:port (e.g. 127.0.0.1:9847 or [::1]:9847), got {value!r}")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return host, port


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="lowest level written to stdout")
    format: Literal["json", "console"] = Field("json", description="json lines (for journald) or console")
    store: LogStoreConfig = Field(default_factory=LogStoreConfig)
    files: list[LogFileConfig] = Field(
        default_factory=list, description="the host's log files GET /api/v1/logs also reads (agent/logbook)"
    )

    @field_validator("files")
    @classmethod
    def _files(cls, files: list[LogFileConfig]) -> list[LogFileConfig]:
        unique_names(files, "log file")
        return files


class TLSServerConfig(Section):
    """node_exporter's web-config `tls_server_config`, applied to the listener (API and /metrics)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: Literal[
        "NoClientCert", "RequestClientCert", "RequireAnyClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = "NoClientCert"

    @model_validator(mode="after")
    def _ca_needed(self) -> TLSServerConfig:
        if self.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not (
            self.client_ca_file
        ):
            raise ValueError(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        return self


class RateLimitConfig(Section):
    """Requests per key (or per address when unauthenticated) and category, in a fixed window."""

    window: Duration = Field(60.0, gt=0)
    default: int = Field(600, ge=1, description="limit for categories not listed")
    categories: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: {"health": 100, "metrics": 50, "config": 20, "backup": 10, "maintenance": 10},
        description="limit per window by route category (seed: health 100/min, metrics 50/min, ...)",
    )


class ApiConfig(Section):
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies get 413")
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    shutdown_timeout: Duration = Field(8.0, description="how long SIGTERM waits for in-flight requests")


class MetricsEndpointConfig(Section):
    """Who may scrape /metrics; node_exporter's `basic_auth_users` (bcrypt hashes) or a bearer token."""

    enabled: bool = True
    basic_auth_users: dict[str, SecretStr] = Field(default_factory=dict, description="user: bcrypt hash")
    bearer_token: SecretStr | None = None
    require_api_key: bool = Field(False, description="also accept/require an API key with read:metrics")

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, hashed in users.items():
            if not hashed.get_secret_value().startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"user {name!r}: expected a bcrypt hash ($2b$...), as node_exporter does")
        return users


class CollectorSettings(Section):
    enabled: bool = True
    interval: Duration | None = Field(None, description="defaults to collectors.interval")
    timeout: Duration | None = Field(None, description="defaults to collectors.timeout")


class FilesystemCollectorConfig(CollectorSettings):
    mount_points_exclude: Pattern = NODE_MOUNT_POINTS_EXCLUDE
    fs_types_exclude: Pattern = NODE_FS_TYPES_EXCLUDE
    stat_timeout: Duration = Field(
        3.0, description="a mount whose statfs takes longer is skipped until it answers again; "
        "keep it below the collector's timeout so the other mounts are still reported",
    )


class DiskstatsCollectorConfig(CollectorSettings):
    device_exclude: Pattern = NODE_DISKSTATS_DEVICE_EXCLUDE


class NetdevCollectorConfig(CollectorSettings):
    device_exclude: Pattern | None = None


class CollectorsConfig(Section):
    interval: Duration = Field(15.0, gt=0)
    timeout: Duration = Field(5.0, gt=0)
    proc_path: str = Field("/proc", description="procfs mount point (a container may see the host's elsewhere)")
    sys_path: str = Field("/sys", description="sysfs mount point")
    cpu: CollectorSettings = Field(default_factory=CollectorSettings)
    loadavg: CollectorSettings = Field(default_factory=CollectorSettings)
    meminfo: CollectorSettings = Field(default_factory=CollectorSettings)
    filesystem: FilesystemCollectorConfig = Field(default_factory=FilesystemCollectorConfig)
    diskstats: DiskstatsCollectorConfig = Field(default_factory=DiskstatsCollectorConfig)
    netdev: NetdevCollectorConfig = Field(default_factory=NetdevCollectorConfig)
    stat: CollectorSettings = Field(default_factory=CollectorSettings)
    time: CollectorSettings = Field(default_factory=CollectorSettings)
    uname: CollectorSettings = Field(default_factory=CollectorSettings)
    filefd: CollectorSettings = Field(default_factory=CollectorSettings)
    hwmon: CollectorSettings = Field(default_factory=CollectorSettings)

    @model_validator(mode="after")
    def _stat_timeout_below_timeout(self) -> CollectorsConfig:
        if self.filesystem.stat_timeout >= self.timeout_of("filesystem"):
            raise ValueError(
                f"filesystem.stat_timeout ({self.filesystem.stat_timeout:g}s) must be below the filesystem "
                f"collector's timeout ({self.timeout_of('filesystem'):g}s), or one hung mount hides all mounts"
            )
        return self

    def settings(self, name: str) -> CollectorSettings:
        return getattr(self, name)

    def interval_of(self, name: str) -> float:
        return self.settings(name).interval or self.interval

    def timeout_of(self, name: str) -> float:
        return self.settings(name).timeout or self.timeout


class ProcessesConfig(Section):
    cache_ttl: Duration = Field(1.0, description="process table scans are shared for this long")
    max_limit: int = Field(1000, ge=1)


class StoreConfig(Section):
    path: str | None = Field(None, description="defaults to <state_dir>/vigil.db")
    synchronous: Literal["normal", "full"] = Field(
        "full", description="full: fsync on every commit (survives power loss); normal: survives kill -9"
    )
    batch_max: int = Field(500, ge=1, description="writes grouped into one transaction at most")


class RetentionConfig(Section):
    """How long each tier of the metrics history is kept; queries past a tier's horizon use the next."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    raw: Duration = Field(48 * 3600.0, ge=7200, description="raw samples (at least 2h: one open and one closed block)")
    minute: Duration = Field(
        30 * 86400.0, alias="1m", ge=3600, description="1-minute rollups (min, max, sum, count, last)"
    )
    hour: Duration = Field(365 * 86400.0, alias="1h", ge=3600, description="1-hour rollups")


class QueryConfig(Section):
    """Limits of the PromQL engine; Prometheus's names and defaults where it has them."""

    lookback_delta: Duration = Field(300.0, gt=0, description="how far back an instant selector looks for a sample")
    timeout: Duration = Field(
        120.0, gt=0, description="longest a query may run (the timeout parameter may only lower it)"
    )
    max_samples: int = Field(5_000_000, ge=1000, description="samples a query may hold in memory")
    max_points_per_series: int = Field(11_000, ge=10, description="points per series of a range query")
    max_series_matchers: int = Field(100, ge=1, description="match[] selectors per series/labels request")
    concurrency: int = Field(2, ge=1, le=16, description="queries evaluated at the same time; more wait")


class ViewConfig(Section):
    """A named PromQL expression for GET /api/v1/metrics (the seeds' metric views)."""

    expr: str
    description: str = ""
    unit: str = ""

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        from agent.promql.parser import expr_type, parse  # the schema loads first; keep its imports light
        from agent.promql.values import ParseError

        try:
            expr = parse(value)
        except ParseError as exc:
            raise ValueError(f"invalid PromQL: {exc}") from None
        kind = expr_type(expr)
        if kind not in ("vector", "scalar"):
            raise ValueError(f"a view must give an instant vector or a scalar, this gives a {kind}")
        return value


DEFAULT_VIEWS: dict[str, dict[str, str]] = {
    "cpu_usage_percent": {
        "expr": '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m])))', "unit": "percent",
        "description": "share of CPU time not idle, all CPUs"},
    "memory_usage_percent": {
        "expr": "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)", "unit": "percent",
        "description": "memory not available to new processes"},
    "load1": {"expr": "node_load1", "description": "1-minute load average"},
    "disk_usage_percent": {
        "expr": "100 * (node_filesystem_size_bytes - node_filesystem_free_bytes) / (node_filesystem_size_bytes"
                " - node_filesystem_free_bytes + node_filesystem_avail_bytes)", "unit": "percent",
        "description": "space used per mountpoint, as df's Use% (blocks reserved for root not counted)"},
    "network_receive_bytes_per_second": {
        "expr": "sum by (device) (rate(node_network_receive_bytes_total[5m]))", "unit": "bytes/s",
        "description": "received per interface"},
    "network_transmit_bytes_per_second": {
        "expr": "sum by (device) (rate(node_network_transmit_bytes_total[5m]))", "unit": "bytes/s",
        "description": "sent per interface"},
    "api_requests_per_second": {
        "expr": "sum(rate(vigil_http_requests_total[5m]))", "unit": "requests/s",
        "description": "requests to Vigil's API"},
    "api_p95_latency_seconds": {
        "expr": "histogram_quantile(0.95, sum by (le) (rate(vigil_http_request_duration_seconds_bucket[5m])))",
        "unit": "seconds", "description": "95th percentile of Vigil's API response time"},
}


class HistoryConfig(Section):
    """The metrics history (agent/tsdb): what is kept, for how long, and the query engine's limits."""

    enabled: bool = Field(True, description="keep collector and self metrics in the local history")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    flush_interval: Duration = Field(
        60.0, gt=0, le=60, description="collected samples are written to disk this often (a crash loses at most this)"
    )
    self_metrics_interval: Duration = Field(15.0, gt=0, description="how often Vigil's own metrics are recorded")
    labels: LabelSet = Field(
        default_factory=dict,
        description="labels added to every recorded series (e.g. job/instance for node_exporter dashboards)",
    )
    max_series: int = Field(100_000, ge=100, description="series the history will create; more are refused")
    import_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="largest body POST /api/v1/import takes (backfills are big)"
    )
    query: QueryConfig = Field(default_factory=QueryConfig)
    views: dict[str, ViewConfig] = Field(
        default_factory=lambda: {k: ViewConfig(**v) for k, v in DEFAULT_VIEWS.items()},
        description="named PromQL expressions served by GET /api/v1/metrics; replaces the default set when given",
    )


class CheckRunnerConfig(Section):
    """How checks are run and their results kept (agent/checks)."""

    result_retention: Duration = Field(
        7 * 86400.0, ge=3600, description="every result of every check is kept this long"
    )
    state_retention: Duration = Field(
        400 * 86400.0, ge=86400,
        description="state changes (uptime, last downtime) and closed incidents are kept this long",
    )
    max_output_bytes: int = Field(65536, ge=1024, description="command and body output beyond this is cut")
    systemctl: str = Field("systemctl", description="systemctl program, for systemd checks, units and restart_unit")
    flush_interval: Duration = Field(
        2.0, gt=0, le=60, description="results are written in batches this often (state changes at once)"
    )


def _check_relations(checks: list[CheckConfigBase]) -> None:
    """Unique names, dependencies that exist and do not loop; errors name the entry (`at [i]...`)."""
    index = unique_names(checks, "check")
    for i, check in enumerate(checks):
        for j, dep in enumerate(check.depends_on):
            if dep not in index:
                raise ValueError(f"at [{i}].depends_on[{j}]: no check named {dep!r}")
            if dep == check.name:
                raise ValueError(f"at [{i}].depends_on[{j}]: a check cannot depend on itself")
    deps = {c.name: c.depends_on for c in checks}
    for i, check in enumerate(checks):
        path, seen = [check.name], {check.name}
        stack = [(check.name, iter(deps[check.name]))]
        while stack:
            _node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                continue
            if nxt == check.name:
                raise ValueError(f"at [{i}].depends_on: dependency loop {' -> '.join([*path, nxt])}")
            if nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                stack.append((nxt, iter(deps[nxt])))


class TasksConfig(Section):
    """Long operations run as tasks (agent/tasks)."""

    max_concurrent: int = Field(2, ge=1, le=32, description="tasks running at the same time; more wait as pending")
    retention: Duration = Field(7 * 86400.0, ge=3600, description="finished tasks are kept this long, then pruned")


class ReloadConfig(Section):
    watch: bool = Field(True, description="apply edits of the config files by themselves")
    debounce: Duration = Field(0.1, description="quiet time after the last file event before reloading")


class Config(Section):
    """Vigil's configuration (vigil.yaml plus drop-in files)."""

    listen: str = Field("127.0.0.1:9847", description="host:port of the API and /metrics")
    state_dir: str = Field("/var/lib/vigil", description="database, admin.key; relative to the working dir")
    environment: str = "production"
    hostname: str | None = Field(None, description="defaults to the system hostname")
    include: list[str] = Field(
        default_factory=lambda: ["conf.d/*.yaml", "checks.d/*.yaml"],
        description="drop-in files merged into this one, relative to its directory",
    )
    log: LogConfig = Field(default_factory=LogConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    tls_server_config: TLSServerConfig | None = None
    metrics: MetricsEndpointConfig = Field(default_factory=MetricsEndpointConfig)
    collectors: CollectorsConfig = Field(default_factory=CollectorsConfig)
    processes: ProcessesConfig = Field(default_factory=ProcessesConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    reload: ReloadConfig = Field(default_factory=ReloadConfig)
    history: HistoryConfig = Field(default_factory=HistoryConfig)
    checks: list[CheckUnion] = Field(default_factory=list, description="health checks (agent/checks); see checks.d/")
    check_runner: CheckRunnerConfig = Field(default_factory=CheckRunnerConfig)
    units: list[UnitConfig] = Field(
        default_factory=list, description="managed services: the only units the API may start, stop, restart"
    )
    alerting: AlertingConfig = Field(default_factory=AlertingConfig, description="rule evaluation (agent/alerting)")
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    notifications: NotificationsConfig = Field(
        default_factory=NotificationsConfig, description="receivers and routing of alert notifications (agent/notify)"
    )
    security: SecurityConfig = Field(
        default_factory=SecurityConfig, description="API access policy: allowlist, lockouts, key age (agent/security)"
    )
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    cleanup: CleanupConfig = Field(
        default_factory=CleanupConfig, description="what POST /api/v1/maintenance/cleanup may delete (agent/cleanup)"
    )

    @field_validator("checks")
    @classmethod
    def _checks(cls, checks: list[CheckConfigBase]) -> list[CheckConfigBase]:
        _check_relations(checks)
        return checks

    @field_validator("notifications")
    @classmethod
    def _snapshot_views(cls, notifications: NotificationsConfig, info: ValidationInfo) -> NotificationsConfig:
        history = info.data.get("history")
        if history is not None:
            unknown = [name for name in notifications.metrics.views if name not in history.views]
            if unknown:
                raise ValueError(f"metrics.views names views that history.views does not define: "
                                 f"{', '.join(unknown)} (defined: {', '.join(sorted(history.views)) or 'none'})")
        return notifications

    @field_validator("units")
    @classmethod
    def _units(cls, units: list[UnitConfig]) -> list[UnitConfig]:
        unique_names(units, "unit")
        return units

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value


# Changing these needs a restart; a reload keeps the running value and says so.
RESTART_REQUIRED = (
    "listen", "state_dir", "store", "tls_server_config", "collectors.proc_path", "collectors.sys_path",
    "api.shutdown_timeout", "hostname",  # hostname: the notifier's MQTT topics, client id and instance label
)
