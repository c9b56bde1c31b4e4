"""Deleting old temporary files inside one configured directory, and nothing outside it.

The walk holds a descriptor of each directory it is in and names every file relative to it
(`os.fwalk` and `unlink(dir_fd=...)`, as `shutil.rmtree` does), so a directory swapped for a symlink
while the walk runs cannot lead it elsewhere. Symlinks are never followed and never deleted: a link
inside the directory pointing outside stays, and so does its target. Only regular files are deleted;
directories, sockets, FIFOs and devices stay. A file's age is its modification time (`find -mtime`);
ctime changes with every chmod and atime is often not kept. Directories to protect (Vigil's state and
config directories, should one lie inside a temp dir) are skipped whole, and protected files (the
database) individually, both compared by device and inode so that no spelling of the path gets past.

Runs in a worker thread: it blocks on the filesystem.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

MAX_ERRORS = 20  # per directory; more are counted, not listed
CANCEL_EVERY = 256  # files between two looks at the cancel flag

FileId = tuple[int, int]  # (st_dev, st_ino)


class Cancelled(Exception):
    """The walk stopped because cancelling was asked for; `partial` has what was done until then."""

    def __init__(self, partial: DirResult):
        super().__init__(f"cancelled while cleaning {partial.path}")
        self.partial = partial


@dataclass
class DirResult:
    path: str
    files: int = 0  # deleted (or, in a dry run, that would be)
    bytes: int = 0  # their sizes; a file with other hard links frees nothing and counts 0
    kept: int = 0  # regular files younger than the cut-off
    skipped_symlinks: int = 0
    skipped_other: int = 0  # sockets, FIFOs, devices
    excluded: list[str] = field(default_factory=list)  # protected directories inside, not entered
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "files": self.files, "bytes": self.bytes, "kept": self.kept,
            "skipped_symlinks": self.skipped_symlinks, "skipped_other": self.skipped_other,
            "excluded": self.excluded, "errors": self.errors, "error_count": self.error_count,
        }


def file_id(path: str) -> FileId | None:
    """Device and inode of `path` (symlinks followed: what the path names in the end), None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def clean_dir(
    root: str, cutoff: float, *, dry_run: bool, protected_dirs: Collection[FileId] = (),
    protected_files: Collection[FileId] = (), cancelled: Callable[[], bool] = lambda: False,
) -> DirResult:
    """Delete regular files under `root` last modified before `cutoff` (Unix time); in a dry run,
    only count them. Raises Cancelled once `cancelled()` turns true."""
    result = DirResult(root)
    try:
        top = os.lstat(root)
    except FileNotFoundError:
        result.error(f"{root}: does not exist")
        return result
    except OSError as exc:
        result.error(f"{root}: {exc.strerror or exc}")
        return result
    if stat.S_ISLNK(top.st_mode):
        result.error(f"{root}: is a symlink; it is not followed (name the directory it points to instead)")
        return result
    if not stat.S_ISDIR(top.st_mode):
        result.error(f"{root}: is not a directory")
        return result
    if (top.st_dev, top.st_ino) in protected_dirs:
        result.error(f"{root}: is Vigil's own state or config directory; nothing in it is deleted")
        return result

    def walk_error(exc: OSError) -> None:
        result.error(f"{exc.filename or root}: {exc.strerror or exc}")

    seen = 0
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False, onerror=walk_error):
        for name in list(dirnames):
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError as exc:
                dirnames.remove(name)
                result.error(f"{os.path.join(dirpath, name)}: {exc.strerror or exc}")
                continue
            if stat.S_ISLNK(st.st_mode):  # a link to a directory: listed as one, never entered
                dirnames.remove(name)
                result.skipped_symlinks += 1
            elif (st.st_dev, st.st_ino) in protected_dirs:
                dirnames.remove(name)
                result.excluded.append(os.path.join(dirpath, name))
        for name in filenames:
            seen += 1
            if seen % CANCEL_EVERY == 0 and cancelled():
                raise Cancelled(result)
            _one(result, dirpath, dirfd, name, cutoff, dry_run, protected_files)
    if cancelled():
        raise Cancelled(result)
    return result


def _one(result: DirResult, dirpath: str, dirfd: int, name: str, cutoff: float, dry_run: bool,
         protected_files: Collection[FileId]) -> None:
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:  # gone meanwhile: someone else cleaned it
        return
    except OSError as exc:
        result.error(f"{os.path.join(dirpath, name)}: {exc.strerror or exc}")
        return
    if stat.S_ISLNK(st.st_mode):
        result.skipped_symlinks += 1
        return
    if not stat.S_ISREG(st.st_mode):
        result.skipped_other += 1
        return
    if st.st_mtime >= cutoff or (st.st_dev, st.st_ino) in protected_files:
        result.kept += 1
        return
    if not dry_run:
        try:
            os.unlink(name, dir_fd=dirfd)  # the name in this directory only: never a target elsewhere
        except FileNotFoundError:
            return
        except OSError as exc:
            result.error(f"{os.path.join(dirpath, name)}: {exc.strerror or exc}")
            return
    result.files += 1
    result.bytes += st.st_size if st.st_nlink <= 1 else 0
