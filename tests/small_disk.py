"""A disk that fills up for real: a small tmpfs mounted in a private mount namespace.

A holder process (``sleep``) owns the namespace and its tmpfs; processes under test are started inside it with
``nsenter``, so they can be killed and restarted on the same disk. The test reaches the files through
``/proc/<holder>/root/<mountpoint>`` to fill the disk mid-run and free it again. Nothing is mounted in the test's
own namespace, so nothing is left behind if the test dies. Needs root and util-linux's ``unshare``/``nsenter``;
:func:`require` skips a test where this machine does not allow it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType

import pytest


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None if small disks can be made here, else why not."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "util-linux's unshare and nsenter are not installed"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"this machine does not allow a private tmpfs mount ({probe.stderr.strip() or probe.returncode})"
    return None


def require() -> None:
    reason = available()
    if reason is not None:
        pytest.skip(f"needs a small tmpfs in a private mount namespace: {reason}")


class SmallDisk:
    """A ``size_kib`` tmpfs at ``mountpoint`` (a directory of the test's), seen only by processes started here."""

    def __init__(self, mountpoint: Path, size_kib: int) -> None:
        require()
        self.mountpoint = mountpoint
        self.size_kib = size_kib
        mountpoint.mkdir(parents=True, exist_ok=True)
        script = 'mount -t tmpfs -o size="$1"k,mode=0700 tmpfs "$2" && echo mounted && exec sleep 3600'
        self._holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                                         str(size_kib), str(mountpoint)], stdout=subprocess.PIPE, text=True)
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline().strip()
        if line != "mounted":
            self.close()
            raise AssertionError(f"could not mount the small disk: {line!r}")

    def command(self, argv: list[str], cwd: Path | None = None) -> list[str]:
        """``argv`` run inside the small disk's mount namespace, in ``cwd`` (entering it resets the directory)."""
        wd = [f"--wd={cwd}"] if cwd is not None else []
        return ["nsenter", f"--mount=/proc/{self._holder.pid}/ns/mnt", *wd, "--", *argv]

    def path(self, name: str = "") -> Path:
        """A path on the small disk as processes outside the namespace (this one) reach it."""
        return Path(f"/proc/{self._holder.pid}/root") / str(self.mountpoint).lstrip("/") / name

    def fill(self) -> int:
        """Write a filler file until the disk is full, down to the last byte; returns the bytes written."""
        written = 0
        with open(self.path("filler"), "ab", buffering=0) as filler:
            for size in (65536, 4096, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        written += filler.write(chunk) or 0
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path("filler"))

    def close(self) -> None:
        """Stop the holder (by its PID); the tmpfs goes with its namespace."""
        if self._holder.poll() is None:
            self._holder.send_signal(signal.SIGKILL)
        self._holder.wait(10)
        if self._holder.stdout is not None:
            self._holder.stdout.close()

    def __enter__(self) -> SmallDisk:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

