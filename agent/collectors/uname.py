"""node_uname_info, as node_exporter's uname collector.

`os.uname()` has no domain name, so it is read from /proc/sys/kernel/domainname, which holds
what uname(2) returns in that field ("(none)" when unset, as node_exporter shows it).
"""

from __future__ import annotations

import os

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings


@register
class UnameCollector(Collector):
    name = "uname"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        with open(os.path.join(self.ctx.proc_path, "sys", "kernel", "domainname")) as f:
            domainname = f.read().strip()
        u = os.uname()
        family = Family(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            "gauge",
            ("sysname", "release", "version", "machine", "nodename", "domainname"),
        )
        family.add(1, u.sysname, u.release, u.version, u.machine, u.nodename, domainname)
        return [family]
