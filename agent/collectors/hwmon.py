"""Temperatures from /sys/class/hwmon as node_hwmon_temp_celsius{chip,sensor}, as node_exporter.

hwmonN numbers follow driver load order and change between boots, so, like node_exporter,
the `chip` label is derived from the device the monitor belongs to (its parent directory
and name under /sys/devices, e.g. "platform_coretemp_0"), falling back to the `name` file
and then to hwmonN. Machines without sensors (most VMs) have no hwmon entries: that is an
empty result, not a failure. A sensor file that cannot be read (absent probe, EIO) is
skipped, because drivers expose inputs for probes that are not connected.
"""

from __future__ import annotations

import os
import re

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings

_INVALID = re.compile(r"[^a-z0-9:_]")
_TEMP_FILE = re.compile(r"^(temp\d+)_(input|max|crit|label)$")


def _clean(name: str) -> str:
    return _INVALID.sub("_", name.strip().lower()).strip("_")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def chip_name(hwmon_dir: str) -> str:
    """node_exporter's hwmonName: "<parent>_<device>" of the resolved device link, else `name`."""
    device = os.path.join(hwmon_dir, "device")
    if os.path.exists(device):
        parent, dev_name = os.path.split(os.path.realpath(device))
        clean_name, clean_type = _clean(dev_name), _clean(os.path.basename(parent))
        if clean_type and clean_name:
            return f"{clean_type}_{clean_name}"
        if clean_name:
            return clean_name
    name = _clean(_read(os.path.join(hwmon_dir, "name")) or "")
    return name or _clean(os.path.basename(os.path.realpath(hwmon_dir)))


@register
class HwmonCollector(Collector):
    name = "hwmon"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        root = os.path.join(self.ctx.sys_path, "class", "hwmon")
        try:
            entries = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        sensor_labels = ("chip", "sensor")
        temp = Family(
            "node_hwmon_temp_celsius", "Hardware monitor for temperature (input)", "gauge", sensor_labels
        )
        temp_max = Family(
            "node_hwmon_temp_max_celsius", "Hardware monitor for temperature (max)", "gauge", sensor_labels
        )
        temp_crit = Family(
            "node_hwmon_temp_crit_celsius", "Hardware monitor for temperature (crit)", "gauge", sensor_labels
        )
        labels = Family(
            "node_hwmon_sensor_label", "Label for given chip and sensor", "gauge", ("chip", "sensor", "label")
        )
        names = Family(
            "node_hwmon_chip_names", "Annotation metric for human-readable chip names", "gauge",
            ("chip", "chip_name"),
        )
        by_kind = {"input": temp, "max": temp_max, "crit": temp_crit}
        for entry in entries:
            hwmon_dir = os.path.join(root, entry)
            chip = chip_name(hwmon_dir)
            human = _read(os.path.join(hwmon_dir, "name"))
            if human:
                names.add(1, chip, human)
            # Old drivers put the sensor files in the device directory instead; a file present in
            # both places is the same reading, so the later one simply replaces the earlier.
            readings: dict[tuple[str, str], str] = {}
            for sensor_dir in (hwmon_dir, os.path.join(hwmon_dir, "device")):
                try:
                    files = os.listdir(sensor_dir)
                except OSError:
                    continue
                for file in files:
                    match = _TEMP_FILE.match(file)
                    if match:
                        raw = _read(os.path.join(sensor_dir, file))
                        if raw is not None:
                            readings[(match[1], match[2])] = raw
            for (sensor, kind), raw in sorted(readings.items()):
                if kind == "label":
                    labels.add(1, chip, sensor, raw)
                    continue
                try:
                    by_kind[kind].add(int(raw) / 1000.0, chip, sensor)
                except ValueError:
                    continue
        return [f for f in (temp, temp_max, temp_crit, labels, names) if f.samples]
