"""Host collectors against this machine's real /proc and /sys, and against small fake trees.

Real-host tests compare with the kernel's own files read just before and after a collection
(so moving counters are checked exactly, not "roughly"). Fake trees check parsing and the
exclusion regexes byte for byte. The only stand-in is the filesystem collector's statvfs,
replaced by one that blocks on an Event: a hung NFS server cannot be produced in a test.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.collectors import REGISTRY, Collector, CollectorContext, Family
from agent.collectors.filesystem import FilesystemCollector
from agent.config.schema import (
    CollectorsConfig,
    CollectorSettings,
    DiskstatsCollectorConfig,
    FilesystemCollectorConfig,
    NetdevCollectorConfig,
)
from agent.selfmetrics import SelfMetrics

USER_HZ = os.sysconf("SC_CLK_TCK")
ALL = {
    "cpu", "loadavg", "meminfo", "filesystem", "diskstats", "netdev",
    "stat", "time", "uname", "filefd", "hwmon",
}

Make = Callable[..., Collector]


@pytest.fixture
def make() -> Iterator[Make]:
    """Builds collectors on a fresh SelfMetrics and closes them (their pools) after the test."""
    made: list[Collector] = []

    def build(name: str, proc: Path | str = "/proc", sys: Path | str = "/sys") -> Collector:
        ctx = CollectorContext(metrics=SelfMetrics(), proc_path=str(proc), sys_path=str(sys))
        collector = REGISTRY[name](ctx)
        made.append(collector)
        return collector

    yield build
    for collector in made:
        collector.close()


def by_name(families: list[Family]) -> dict[str, Family]:
    names = [f.name for f in families]
    assert len(names) == len(set(names)), f"duplicate families: {names}"
    return {f.name: f for f in families}


def values(family: Family) -> dict[tuple[str, ...], float]:
    samples = dict(family.samples)
    assert len(samples) == len(family.samples), f"duplicate label sets in {family.name}"
    return samples


def only(family: Family) -> float:
    assert len(family.samples) == 1, family.samples
    return family.samples[0][1]


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def proc_stat_ticks() -> dict[tuple[str, str], int]:
    """(cpu, mode) -> ticks from the per-CPU lines of /proc/stat."""
    modes = ("user", "nice", "system", "idle")
    out = {}
    for line in read("/proc/stat").splitlines():
        if re.match(r"cpu\d+ ", line):
            parts = line.split()
            for mode, ticks in zip(modes, parts[1:5], strict=True):
                out[(parts[0][3:], mode)] = int(ticks)
    return out


def first_field(path: str, key: str) -> int:
    for line in read(path).splitlines():
        if line.startswith(key + " "):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in {path}")


# --- every collector, real host ----------------------------------------------------------------

def test_registry_holds_every_collector_under_its_config_key() -> None:
    assert set(REGISTRY) == ALL
    config = CollectorsConfig()
    for name, cls in REGISTRY.items():
        assert cls.name == name
        assert isinstance(config.settings(name), CollectorSettings)


def test_every_family_is_well_formed(make: Make) -> None:
    config = CollectorsConfig()
    seen: set[str] = set()
    for name in sorted(ALL):
        for family in make(name).collect(config.settings(name)):
            assert family.name not in seen, f"{family.name} exported twice"
            seen.add(family.name)
            assert re.fullmatch(r"node_[a-zA-Z0-9_]+", family.name), family.name
            assert family.help
            assert (family.type == "counter") == family.name.endswith("_total"), family.name
            for labels, value in family.samples:
                assert len(labels) == len(family.label_names), family.name
                assert all(isinstance(v, str) for v in labels), (family.name, labels)
                assert isinstance(value, float)


# --- real host, value by value ------------------------------------------------------------------

def test_cpu_has_one_label_per_cpu_and_matches_proc_stat(make: Make) -> None:
    collector = make("cpu")
    before = proc_stat_ticks()
    families = by_name(collector.collect(CollectorSettings()))
    after = proc_stat_ticks()

    seconds = values(families["node_cpu_seconds_total"])
    assert {cpu for cpu, _ in seconds} == {str(i) for i in range(psutil.cpu_count())}
    assert {mode for _, mode in seconds} == {
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    }
    for key in before:
        assert before[key] / USER_HZ <= seconds[key] <= after[key] / USER_HZ, key
    guest = values(families["node_cpu_guest_seconds_total"])
    assert set(guest) == {(str(i), m) for i in range(psutil.cpu_count()) for m in ("user", "nice")}


def test_loadavg_matches_getloadavg(make: Make) -> None:
    before = os.getloadavg()
    families = by_name(make("loadavg").collect(CollectorSettings()))
    after = os.getloadavg()
    for i, name in enumerate(("node_load1", "node_load5", "node_load15")):
        low, high = sorted((before[i], after[i]))
        assert low - 0.02 <= only(families[name]) <= high + 0.02, (name, before, after)


def test_meminfo_matches_proc_meminfo(make: Make) -> None:
    families = by_name(make("meminfo").collect(CollectorSettings()))
    mem_total_kb = first_field("/proc/meminfo", "MemTotal:")
    assert only(families["node_memory_MemTotal_bytes"]) == mem_total_kb * 1024
    assert only(families["node_memory_MemTotal_bytes"]) == psutil.virtual_memory().total
    for field in ("MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree"):
        assert f"node_memory_{field}_bytes" in families
    assert only(families["node_memory_SwapTotal_bytes"]) == first_field("/proc/meminfo", "SwapTotal:") * 1024


def test_filesystem_reports_root_like_statvfs(make: Make) -> None:
    mounts = [line.split() for line in read("/proc/self/mounts").splitlines()]
    root = [m for m in mounts if m[1] == "/"][-1]
    settings = FilesystemCollectorConfig()
    if re.search(settings.fs_types_exclude, root[2]):
        settings = FilesystemCollectorConfig(fs_types_exclude="^$")  # e.g. overlay in a container
    families = by_name(make("filesystem").collect(settings))

    labels = (root[0], root[2], "/")
    st = os.statvfs("/")
    assert values(families["node_filesystem_device_error"])[labels] == 0
    assert values(families["node_filesystem_size_bytes"])[labels] == st.f_blocks * st.f_frsize
    assert values(families["node_filesystem_files"])[labels] == st.f_files
    assert values(families["node_filesystem_readonly"])[labels] == float("ro" in root[3].split(","))
    assert values(families["node_filesystem_size_bytes"])[labels] == psutil.disk_usage("/").total
    mountpoints = {mp for _, _, mp in values(families["node_filesystem_device_error"])}
    assert not any(re.search(settings.mount_points_exclude, mp) for mp in mountpoints)


def test_diskstats_matches_proc_diskstats(make: Make) -> None:
    def reads() -> dict[str, int]:
        return {p[2]: int(p[3]) for p in (line.split() for line in read("/proc/diskstats").splitlines())}

    settings = DiskstatsCollectorConfig()
    before = reads()
    families = by_name(make("diskstats").collect(settings))
    after = reads()
    completed = values(families["node_disk_reads_completed_total"])
    expected = {d for d in before if not re.search(settings.device_exclude, d)}
    assert {d for (d,) in completed} == expected
    for device in expected:
        assert before[device] <= completed[(device,)] <= after[device]


def test_netdev_matches_proc_net_dev(make: Make) -> None:
    def rx_bytes() -> dict[str, int]:
        lines = read("/proc/net/dev").splitlines()[2:]
        return {dev.strip(): int(rest.split()[0]) for dev, _, rest in (ln.partition(":") for ln in lines)}

    before = rx_bytes()
    families = by_name(make("netdev").collect(NetdevCollectorConfig()))
    after = rx_bytes()
    received = values(families["node_network_receive_bytes_total"])
    assert {d for (d,) in received} == set(before) == set(psutil.net_io_counters(pernic=True))
    for device in before:
        assert before[device] <= received[(device,)] <= after[device]
    for name in ("receive_packets", "receive_errs", "receive_drop", "transmit_bytes", "transmit_packets",
                 "transmit_errs", "transmit_drop"):
        assert f"node_network_{name}_total" in families


def test_stat_matches_proc_stat(make: Make) -> None:
    before = first_field("/proc/stat", "ctxt")
    families = by_name(make("stat").collect(CollectorSettings()))
    after = first_field("/proc/stat", "ctxt")
    assert only(families["node_boot_time_seconds"]) == first_field("/proc/stat", "btime")
    assert abs(only(families["node_boot_time_seconds"]) - psutil.boot_time()) < 2
    assert before <= only(families["node_context_switches_total"]) <= after
    for name in ("node_forks_total", "node_intr_total", "node_procs_running", "node_procs_blocked"):
        assert name in families


def test_time_filefd_uname_match_the_system(make: Make) -> None:
    before = time.time()
    now = by_name(make("time").collect(CollectorSettings()))
    after = time.time()
    assert before <= only(now["node_time_seconds"]) <= after
    ((zone,), offset) = now["node_time_zone_offset_seconds"].samples[0]
    assert (zone, offset) == (time.localtime().tm_zone, time.localtime().tm_gmtoff)

    maximum = int(read("/proc/sys/fs/file-nr").split()[2])
    fd = by_name(make("filefd").collect(CollectorSettings()))
    assert only(fd["node_filefd_maximum"]) == maximum
    assert only(fd["node_filefd_allocated"]) > 0

    uname = by_name(make("uname").collect(CollectorSettings()))["node_uname_info"]
    u = os.uname()
    domain = read("/proc/sys/kernel/domainname").strip()
    assert uname.samples == [((u.sysname, u.release, u.version, u.machine, u.nodename, domain), 1.0)]


def test_hwmon_on_this_host_succeeds(make: Make) -> None:
    families = make("hwmon").collect(CollectorSettings())
    if not os.path.isdir("/sys/class/hwmon"):
        assert families == []


# --- fake trees: exact parsing and exclusion ----------------------------------------------------

def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def esc(path: Path) -> str:
    """A path as the kernel writes it in /proc/*/mounts."""
    return str(path).replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


PROC_STAT = """\
cpu  300 20 100 9000 50 0 10 0 0 0
cpu0 100 10 50 4500 25 0 5 0 7 3
cpu1 200 10 50 4500 25 0 5 0 0 0
intr 12345 0 1 2 3 4 5
ctxt 67890
btime 1700000000
processes 4242
procs_running 3
procs_blocked 1
softirq 100 1 2 3
"""

MEMINFO = """\
MemTotal:       16000000 kB
MemFree:         8000000 kB
MemAvailable:   12000000 kB
Buffers:          100000 kB
Cached:          2000000 kB
SwapTotal:       1000000 kB
SwapFree:         900000 kB
Active(anon):      12345 kB
HugePages_Total:       7
Hugepagesize:       2048 kB
"""

NET_DEV = """\
Inter-|   Receive                                         |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier \
compressed
    lo:    1000 10 0 0 0 0 0 0     1000 10 0 0 0 0 0 0
  eth0:12345678901 200 1 2 0 0 0 3     5555 40 5 6 0 0 0 0
veth1a2b:       7  1 0 0 0 0 0 0        9  1 0 0 0 0 0 0
"""

DISKSTATS = """\
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 253       0 zram0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   8       0 sda 100 5 2048 1500 200 7 4096 2500 2 3000 4000 9 1 64 11 12 13
   8       1 sda1 90 5 1800 1400 190 7 4000 2400 0 2900 3900 0 0 0 0 0 0
 259       0 nvme0n1 10 0 80 20 30 0 160 40 0 50 60
 259       1 nvme0n1p1 10 0 80 20 30 0 160 40 0 50 60
"""


def test_fake_proc_tree_is_parsed_exactly(make: Make, tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    write(proc, "stat", PROC_STAT)
    write(proc, "meminfo", MEMINFO)
    write(proc, "net/dev", NET_DEV)
    write(proc, "diskstats", DISKSTATS)
    write(proc, "loadavg", "0.50 1.25 2.00 2/345 6789\n")
    write(proc, "sys/fs/file-nr", "1024\t0\t9223372036854775807\n")
    write(proc, "sys/kernel/domainname", "example.org\n")

    cpu = by_name(make("cpu", proc).collect(CollectorSettings()))
    seconds = values(cpu["node_cpu_seconds_total"])
    assert len(seconds) == 16
    assert seconds[("0", "user")] == 100 / USER_HZ
    assert seconds[("1", "idle")] == 4500 / USER_HZ
    assert seconds[("0", "softirq")] == 5 / USER_HZ
    assert values(cpu["node_cpu_guest_seconds_total"]) == {
        ("0", "user"): 7 / USER_HZ, ("0", "nice"): 3 / USER_HZ, ("1", "user"): 0.0, ("1", "nice"): 0.0,
    }

    stat = {f.name: only(f) for f in make("stat", proc).collect(CollectorSettings())}
    assert stat == {
        "node_intr_total": 12345, "node_context_switches_total": 67890, "node_boot_time_seconds": 1700000000,
        "node_forks_total": 4242, "node_procs_running": 3, "node_procs_blocked": 1,
    }

    mem = {f.name: only(f) for f in make("meminfo", proc).collect(CollectorSettings())}
    assert mem["node_memory_MemTotal_bytes"] == 16000000 * 1024
    assert mem["node_memory_SwapFree_bytes"] == 900000 * 1024
    assert mem["node_memory_Active_anon_bytes"] == 12345 * 1024
    assert mem["node_memory_HugePages_Total"] == 7
    assert len(mem) == 10

    load = {f.name: only(f) for f in make("loadavg", proc).collect(CollectorSettings())}
    assert load == {"node_load1": 0.5, "node_load5": 1.25, "node_load15": 2.0}

    fd = {f.name: only(f) for f in make("filefd", proc).collect(CollectorSettings())}
    assert fd == {"node_filefd_allocated": 1024, "node_filefd_maximum": float(9223372036854775807)}

    uname = make("uname", proc).collect(CollectorSettings())[0]
    assert uname.samples[0][0][-1] == "example.org"

    net = by_name(make("netdev", proc).collect(NetdevCollectorConfig()))
    assert len(net) == 16
    assert values(net["node_network_receive_bytes_total"]) == {
        ("lo",): 1000, ("eth0",): 12345678901, ("veth1a2b",): 7,
    }
    assert values(net["node_network_receive_multicast_total"])[("eth0",)] == 3
    assert values(net["node_network_transmit_drop_total"])[("eth0",)] == 6
    assert "node_network_transmit_colls_total" in net
    net = by_name(make("netdev", proc).collect(NetdevCollectorConfig(device_exclude="^(lo|veth.*)$")))
    assert set(values(net["node_network_transmit_bytes_total"])) == {("eth0",)}

    disk = by_name(make("diskstats", proc).collect(DiskstatsCollectorConfig()))
    assert set(values(disk["node_disk_reads_completed_total"])) == {("sda",), ("nvme0n1",)}
    sda = {name: values(f)[("sda",)] for name, f in disk.items()}
    assert sda["node_disk_reads_completed_total"] == 100
    assert sda["node_disk_read_bytes_total"] == 2048 * 512
    assert sda["node_disk_written_bytes_total"] == 4096 * 512
    assert sda["node_disk_writes_completed_total"] == 200
    assert sda["node_disk_io_time_seconds_total"] == 3.0
    assert sda["node_disk_read_time_seconds_total"] == 1.5
    assert sda["node_disk_io_now"] == 2
    assert sda["node_disk_flush_requests_time_seconds_total"] == 0.013
    # nvme0n1 has the pre-4.18 column count: no discard or flush columns, so no value for it there.
    assert set(values(disk["node_disk_discards_completed_total"])) == {("sda",)}
    disk = by_name(make("diskstats", proc).collect(DiskstatsCollectorConfig(device_exclude="^nvme")))
    assert set(values(disk["node_disk_io_now"])) == {("loop0",), ("zram0",), ("sda",), ("sda1",)}


def test_cpu_counters_never_go_backwards_but_reset_after_hotplug(make: Make, tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    collector = make("cpu", proc)

    def iowait_idle(iowait: int, idle: int) -> tuple[float, float]:
        write(proc, "stat", f"cpu  1 0 1 {idle} {iowait} 0 0 0 0 0\ncpu0 1 0 1 {idle} {iowait} 0 0 0 0 0\n")
        seconds = values(by_name(collector.collect(CollectorSettings()))["node_cpu_seconds_total"])
        return seconds[("0", "iowait")], seconds[("0", "idle")]

    assert iowait_idle(100, 5000) == (100 / USER_HZ, 5000 / USER_HZ)
    assert iowait_idle(90, 5001) == (100 / USER_HZ, 5001 / USER_HZ)  # iowait dipped: kept
    assert iowait_idle(120, 5002) == (120 / USER_HZ, 5002 / USER_HZ)
    # idle far lower: the CPU went offline and came back with fresh counters
    assert iowait_idle(3, 10) == (3 / USER_HZ, 10 / USER_HZ)


def test_filesystem_mounts_exclusion_escapes_and_duplicates(make: Make, tmp_path: Path) -> None:
    spaced, data, shadowed = tmp_path / "with space", tmp_path / "data", tmp_path / "shadowed"
    for d in (spaced, data, shadowed):
        d.mkdir()
    proc = tmp_path / "proc"
    write(proc, "self/mounts", "\n".join([
        "proc /proc proc rw,nosuid 0 0",
        "tmpfs /dev/shm tmpfs rw 0 0",
        "overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0",
        f"/dev/sdb1 {esc(spaced)} ext4 ro,relatime 0 0",
        f"/dev/sdc1 {esc(data)} xfs rw,relatime 0 0",
        f"/dev/old {esc(shadowed)} ext4 rw 0 0",
        f"/dev/new {esc(shadowed)} ext4 rw 0 0",
        f"cgroup2 {esc(tmp_path)}/cg cgroup2 rw 0 0",
        "",
    ]))
    collector = make("filesystem", proc)
    families = by_name(collector.collect(FilesystemCollectorConfig()))
    errors = values(families["node_filesystem_device_error"])
    assert errors == {
        ("/dev/sdb1", "ext4", str(spaced)): 0,
        ("/dev/sdc1", "xfs", str(data)): 0,
        ("/dev/new", "ext4", str(shadowed)): 0,
    }
    assert values(families["node_filesystem_readonly"]) == {
        ("/dev/sdb1", "ext4", str(spaced)): 1,
        ("/dev/sdc1", "xfs", str(data)): 0,
        ("/dev/new", "ext4", str(shadowed)): 0,
    }
    st = os.statvfs(data)
    labels = ("/dev/sdc1", "xfs", str(data))
    assert values(families["node_filesystem_avail_bytes"])[labels] <= st.f_blocks * st.f_frsize
    assert values(families["node_filesystem_files"])[labels] == st.f_files

    settings = FilesystemCollectorConfig(mount_points_exclude="with space$", fs_types_exclude="^(xfs|proc)$")
    errors = values(by_name(collector.collect(settings))["node_filesystem_device_error"])
    assert {mp for _, _, mp in errors} == {
        "/dev/shm", "/var/lib/docker/overlay2/abc/merged", str(shadowed), f"{tmp_path}/cg",
    }


def test_filesystem_unreadable_mount_is_a_device_error(make: Make, tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    write(proc, "self/mounts", f"/dev/gone {esc(tmp_path / 'missing')} ext4 rw 0 0\n")
    families = by_name(make("filesystem", proc).collect(FilesystemCollectorConfig()))
    missing = ("/dev/gone", "ext4", str(tmp_path / "missing"))
    assert values(families["node_filesystem_device_error"]) == {missing: 1}
    assert families["node_filesystem_size_bytes"].samples == []


def test_hwmon_fake_sysfs(make: Make, tmp_path: Path) -> None:
    sys = tmp_path / "sys"
    coretemp = sys / "devices/platform/coretemp.0"
    hwmon3 = coretemp / "hwmon/hwmon3"
    write(hwmon3, "name", "coretemp\n")
    write(hwmon3, "temp1_input", "45000\n")
    write(hwmon3, "temp1_label", "Package id 0\n")
    write(hwmon3, "temp1_crit", "100000\n")
    write(hwmon3, "temp2_input", "-1500\n")
    (hwmon3 / "temp3_input").mkdir()  # unreadable as a file: an absent probe, skipped
    (hwmon3 / "device").symlink_to("../../../coretemp.0")
    virtual = sys / "devices/virtual/thermal/thermal_zone0/hwmon0"
    write(virtual, "name", "acpitz\n")
    write(virtual, "temp1_input", "27800\n")
    (sys / "class/hwmon").mkdir(parents=True)
    (sys / "class/hwmon/hwmon3").symlink_to("../../devices/platform/coretemp.0/hwmon/hwmon3")
    (sys / "class/hwmon/hwmon0").symlink_to("../../devices/virtual/thermal/thermal_zone0/hwmon0")

    families = by_name(make("hwmon", sys=sys).collect(CollectorSettings()))
    assert values(families["node_hwmon_temp_celsius"]) == {
        ("platform_coretemp_0", "temp1"): 45.0,
        ("platform_coretemp_0", "temp2"): -1.5,
        ("acpitz", "temp1"): 27.8,
    }
    assert values(families["node_hwmon_temp_crit_celsius"]) == {("platform_coretemp_0", "temp1"): 100.0}
    assert values(families["node_hwmon_sensor_label"]) == {
        ("platform_coretemp_0", "temp1", "Package id 0"): 1,
    }
    assert values(families["node_hwmon_chip_names"]) == {
        ("platform_coretemp_0", "coretemp"): 1, ("acpitz", "acpitz"): 1,
    }
    assert make("hwmon", sys=tmp_path / "nosys").collect(CollectorSettings()) == []


def test_unreadable_or_malformed_sources_raise_naming_the_file(make: Make, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = CollectorsConfig()
    for name in ("cpu", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "stat", "uname", "filefd"):
        with pytest.raises(OSError, match=re.escape(str(empty))):
            make(name, empty).collect(config.settings(name))

    bad = tmp_path / "bad"
    write(bad, "loadavg", "garbage\n")
    write(bad, "meminfo", "MemTotal: lots kB\n")
    write(bad, "stat", "cpu0 1 2\nctxt 5\n")
    write(bad, "sys/fs/file-nr", "1 2\n")
    for name in ("loadavg", "meminfo", "stat", "cpu", "filefd"):
        with pytest.raises(ValueError, match=re.escape(str(bad))):
            make(name, bad).collect(config.settings(name))

    with pytest.raises(TypeError, match="FilesystemCollectorConfig"):
        make("filesystem").collect(CollectorSettings())


# --- stuck mounts -------------------------------------------------------------------------------

class HangingStatvfs:
    """os.statvfs, except that paths in `hang` block until `release` is set (a dead NFS server)."""

    def __init__(self, hang: set[str]):
        self.hang = hang
        self.release = threading.Event()
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, path: str) -> os.statvfs_result:
        with self._lock:
            self.calls[path] += 1
        if path in self.hang:
            self.release.wait(30)  # bounded, so that a failing test cannot hang the whole run
        return os.statvfs(path)


def stuck_gauge(collector: Collector) -> float | None:
    return collector.ctx.metrics.registry.get_sample_value("vigil_filesystem_stuck_mounts")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def timed_collect(
    collector: Collector, settings: FilesystemCollectorConfig
) -> tuple[dict[str, Family], float]:
    started = time.monotonic()
    families = collector.collect(settings)
    return by_name(families), time.monotonic() - started


def mount_tree(tmp_path: Path, names: list[str]) -> tuple[Path, dict[str, str]]:
    proc = tmp_path / "proc"
    paths = {}
    lines = []
    for name in names:
        (tmp_path / name).mkdir()
        paths[name] = str(tmp_path / name)
        fstype = "nfs4" if name.startswith("nfs") else "ext4"
        lines.append(f"dev-{name} {esc(tmp_path / name)} {fstype} rw,relatime 0 0")
    write(proc, "self/mounts", "\n".join(lines) + "\n")
    return proc, paths


def errors_by_mountpoint(families: dict[str, Family]) -> dict[str, float]:
    return {mp: v for (_, _, mp), v in values(families["node_filesystem_device_error"]).items()}


def sized(families: dict[str, Family]) -> set[str]:
    return {mp for _, _, mp in values(families["node_filesystem_size_bytes"])}


def test_stuck_mount_is_skipped_until_its_statfs_returns(make: Make, tmp_path: Path) -> None:
    proc, paths = mount_tree(tmp_path, ["healthy", "nfs"])
    nfs, healthy = paths["nfs"], paths["healthy"]
    collector = make("filesystem", proc)
    assert isinstance(collector, FilesystemCollector)
    statvfs = HangingStatvfs({nfs})
    collector._statvfs = statvfs
    settings = FilesystemCollectorConfig(stat_timeout=0.2)
    try:
        families, elapsed = timed_collect(collector, settings)
        assert 0.2 <= elapsed < 0.2 + 1.0
        assert errors_by_mountpoint(families) == {healthy: 0, nfs: 1}
        assert sized(families) == {healthy}
        assert stuck_gauge(collector) == 1

        families, elapsed = timed_collect(collector, settings)
        assert elapsed < 0.2  # nothing to wait for: the stuck mount is not stat'ed again
        assert errors_by_mountpoint(families) == {healthy: 0, nfs: 1}
        assert statvfs.calls[nfs] == 1
        assert statvfs.calls[healthy] == 2

        statvfs.release.set()
        wait_for(lambda: stuck_gauge(collector) == 0)
        families, _ = timed_collect(collector, settings)
        assert errors_by_mountpoint(families) == {healthy: 0, nfs: 0}
        assert sized(families) == {healthy, nfs}
        assert statvfs.calls[nfs] == 2
    finally:
        statvfs.release.set()


def test_many_stuck_mounts_never_block_a_run_past_the_timeout(make: Make, tmp_path: Path) -> None:
    hung = [f"nfs{i}" for i in range(6)]
    proc, paths = mount_tree(tmp_path, [*hung, "healthy"])
    collector = make("filesystem", proc)
    assert isinstance(collector, FilesystemCollector)
    statvfs = HangingStatvfs({paths[name] for name in hung})
    collector._statvfs = statvfs
    settings = FilesystemCollectorConfig(stat_timeout=0.2)
    try:
        stuck_after = []
        for _ in range(3):
            families, elapsed = timed_collect(collector, settings)
            assert elapsed < 0.2 + 1.0
            errors = errors_by_mountpoint(families)
            assert all(errors[paths[name]] == 1 for name in hung)
            stuck_after.append(stuck_gauge(collector))
        # 4 calls in flight per run: the first run strands 4, the next the other 2, then none.
        assert stuck_after == [4, 6, 6]
        assert errors[paths["healthy"]] == 0
        assert all(statvfs.calls[paths[name]] == 1 for name in hung)

        statvfs.release.set()
        wait_for(lambda: stuck_gauge(collector) == 0)
        families, _ = timed_collect(collector, settings)
        assert set(errors_by_mountpoint(families).values()) == {0}
    finally:
        statvfs.release.set()
