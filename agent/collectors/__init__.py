"""Host collectors under node_exporter's names. Importing this package registers all of them."""

from agent.collectors import (  # noqa: F401  (imported for their @register side effect)
    cpu,
    diskstats,
    filefd,
    filesystem,
    hwmon,
    loadavg,
    meminfo,
    netdev,
    stat,
    time,
    uname,
)
from agent.collectors.base import REGISTRY, Collector, CollectorContext, Family

__all__ = ["REGISTRY", "Collector", "CollectorContext", "Family"]
