"""The `cleanup:` config section, next to the code that deletes files: where cleanup may delete old
temporary files, and from what age."""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from agent.config.durations import Duration
from agent.config.section import Section

# A mistyped entry must not turn cleanup loose on a system tree: these are refused outright.
SYSTEM_DIRS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin",
    "/usr/share", "/var", "/var/lib", "/var/log",
})


class CleanupConfig(Section):
    """`POST /api/v1/maintenance/cleanup` (agent/cleanup). Only files inside `temp_dirs` are ever deleted."""

    temp_dirs: list[str] = Field(
        default_factory=list, max_length=100,
        description="absolute directories whose old regular files cleanup deletes; symlinks in them are neither "
                    "followed nor deleted, and Vigil's state directory inside one is skipped",
    )
    temp_max_age: Duration = Field(
        7 * 86400.0, gt=0, description="files not modified for this long are deleted (the request may ask for more)",
    )

    @field_validator("temp_dirs")
    @classmethod
    def _dirs(cls, dirs: list[str]) -> list[str]:
        out: list[str] = []
        for value in dirs:
            if not os.path.isabs(value):
                raise ValueError(f"{value!r} is not an absolute path")
            path = os.path.normpath(value)
            if path.startswith("//"):  # POSIX keeps a leading double slash; it is still the root's subtree
                path = "/" + path.lstrip("/")
            if path in SYSTEM_DIRS:
                raise ValueError(f"{value!r} is a system directory; name a directory of temporary files instead")
            if path not in out:
                out.append(path)
        return out
