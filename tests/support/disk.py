"""A small file system of its own for the full-disk tests: a tmpfs the test mounts.

    def test_something(small_disk):
        small_disk.fill()           # every free byte taken by a filler file
        small_disk.free_up()        # and given back

Mounting needs root (CAP_SYS_ADMIN); where it is not allowed the test is skipped
with one line saying so. CI runs as root and runs these tests.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SIZE_MIB = 20


class SmallDisk:
    """A mounted tmpfs of ``SIZE_MIB`` MiB at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> None:
        """Take every free byte (big pieces, then single pages)."""
        with self.filler.open("ab", buffering=0) as fh:
            for piece in (1024 * 1024, 4096, 512):
                block = bytes(piece)
                while True:
                    try:
                        fh.write(block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        assert self.free() < 4096

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    path = Path(tempfile.mkdtemp(prefix="pmdisk", dir="/tmp"))
    mount = shutil.which("mount")
    res = (
        subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if mount
        else None
    )
    if res is None or res.returncode != 0:
        path.rmdir()
        why = res.stderr.strip() if res is not None else "no mount command"
        pytest.skip(f"full-disk test needs to mount a tmpfs (as root): {why}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        path.rmdir()
