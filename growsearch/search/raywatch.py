"""The local Ray that ``growsearch run`` starts ends with its driver, however the driver ends.

Ray's own fate sharing kills the raylet and GCS with the driver, but not every process
they spawned: after a ``kill -9`` of the driver, ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent`` stayed alive (re-parented to PID 1), and so they did after a failed
start. So :func:`start_local_ray` gives each local Ray a private temp dir
(``/tmp/gs-ray-<pid>-<random>``, short because Ray's socket paths must stay under 107 bytes)
and starts this module as a watchdog process in its own session, its stdin a pipe from the
driver. The kernel closes that pipe when the driver exits, however it exits; the watchdog
then kills every process of that Ray instance, recognised by the temp dir (an open file
under it, on its command line, or ``GROWSEARCH_RAY_DIR`` in its environment, which every Ray
process inherits from the driver), never anyone else's Ray, and removes the temp dir.

Run as a script (``python raywatch.py TEMP_DIR DRIVER_PID``): it imports only the standard
library, so it starts in milliseconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ENV_KEY", "RayGuard", "ray_processes", "start_local_ray"]

#: Environment variable naming the temp dir of the Ray instance a process belongs to.
ENV_KEY = "GROWSEARCH_RAY_DIR"


def ray_processes(temp_dir: str, *, exclude: tuple[int, ...] = ()) -> Iterator[int]:
    """PIDs of the live processes of the Ray instance whose temp dir is ``temp_dir``."""
    tag = f"{ENV_KEY}={temp_dir}\0".encode()
    root = temp_dir.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        proc = f"/proc/{entry}"
        try:
            with open(f"{proc}/environ", "rb") as f:
                if tag in f.read():
                    yield int(entry)
                    continue
            with open(f"{proc}/cmdline", "rb") as f:
                if root in f.read():
                    yield int(entry)
                    continue
            for fd in os.listdir(f"{proc}/fd"):
                if os.readlink(f"{proc}/fd/{fd}").startswith(temp_dir + "/"):
                    yield int(entry)
                    break
        except OSError:  # gone, or not ours to read
            continue


def reap(temp_dir: str, *, exclude: tuple[int, ...] = (), timeout: float = 60.0) -> int:
    """SIGKILL every process of the instance until none is left (two empty scans in a
    row); returns how many were killed."""
    killed: set[int] = set()
    empty = 0
    deadline = time.monotonic() + timeout
    while empty < 2 and time.monotonic() < deadline:
        found = list(ray_processes(temp_dir, exclude=exclude))
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        empty = 0 if found else empty + 1
        time.sleep(0.2)
    return len(killed)


class RayGuard:
    """A local Ray started by :func:`start_local_ray`; :meth:`close` shuts it down and
    lets the watchdog sweep what ``ray.shutdown`` left."""

    def __init__(self, temp_dir: str, watchdog: subprocess.Popen) -> None:
        self.temp_dir = temp_dir
        self.watchdog = watchdog

    def close(self) -> None:
        try:
            import ray

            ray.shutdown()
        except Exception:  # noqa: BLE001 - best effort on the way out; the watchdog below still ends the workers
            pass
        if self.watchdog.stdin is not None:
            self.watchdog.stdin.close()  # EOF: the watchdog kills the leftovers and exits
        try:
            self.watchdog.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass


def _root() -> str:
    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else tempfile.gettempdir()


def start_local_ray(**init_kwargs: Any) -> RayGuard:
    """``ray.init(address="local", **init_kwargs)`` in a private temp dir, watched (see the
    module docstring). A failed start is cleaned up as well, then re-raised."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix=f"gs-ray-{os.getpid()}-", dir=_root())
    watchdog = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), temp_dir, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )
    guard = RayGuard(temp_dir, watchdog)
    old = os.environ.get(ENV_KEY)
    os.environ[ENV_KEY] = temp_dir  # inherited by every process Ray starts from here
    try:
        ray.init(address="local", _temp_dir=temp_dir, **init_kwargs)
    except BaseException:
        guard.close()
        raise
    finally:
        if old is None:
            os.environ.pop(ENV_KEY, None)
        else:
            os.environ[ENV_KEY] = old
    return guard


def _main(temp_dir: str, driver_pid: int) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except OSError:
        pass
    reap(temp_dir, exclude=(os.getpid(), driver_pid))
    shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]))
