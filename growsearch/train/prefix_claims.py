"""Who is training a shared prefix right now: claims, so that a trial waits instead of training it twice.

The prefix cache (:mod:`growsearch.train.prefix_cache`) only helps a trial that starts after
another has written the states it shares. Trials that start together (the first ones of every
study, and any two of a population) would each train the common epochs. Claims close that gap:

- A trial that starts training **claims** every prefix entry it will write and the cache lacks:
  ``DIR/<key>.claim`` created exclusively (``O_EXCL``), holding its host and pid. It drops a
  claim when the entry is stored and all of them when the run ends (finished, failed or
  stopped); meanwhile a daemon thread refreshes them every :data:`REFRESH_S` seconds, however
  long an epoch takes.
- A trial about to start looks for the deepest prefix of its schedule, beyond what the cache
  holds, that a live claim promises (:meth:`PrefixClaims.wait_target`), and **waits** for it
  (:meth:`PrefixClaims.wait`), at most the folder's ``max_wait_s``; then it starts from the
  longest prefix the cache holds. Waiting costs the waiter's worker nothing it would not have
  spent training the same epochs itself.
- A claim is **live** while it was refreshed within :data:`STALE_S` seconds and, on the
  claimant's host, its pid exists. A dead or stale claim is removed by whoever finds it, so a
  killed trial makes nobody wait for long (at once on its host, within a minute elsewhere).
- Waiters hold no claims, so no two trials wait for each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from growsearch.atomic import atomic_write_text, pid_alive

__all__ = ["CLAIM_SUFFIX", "REFRESH_S", "STALE_S", "PrefixClaims"]

CLAIM_SUFFIX = ".claim"
#: Seconds between two refreshes of a run's claims.
REFRESH_S = 10.0
#: A claim not refreshed for this long (seconds) is stale: its claimant is gone.
STALE_S = 60.0
#: Seconds between two looks while waiting.
POLL_S = 0.25


class PrefixClaims:
    """The claims of one run in one cache folder.

    Args:
        root: the cache folder.
        log: where waiting and stale-claim notices go.
    """

    def __init__(self, root: Path, log: Callable[[str], None] = lambda _msg: None) -> None:
        self.root = root
        self.log = log
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.mine: set[str] = set()
        self._lock = threading.Lock()  # a refresh never rewrites a claim being released
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _file(self, key: str) -> Path:
        return self.root / (key + CLAIM_SUFFIX)

    def _record(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "time": time.time()}) + "\n"

    # ---- reading others' claims --------------------------------------------------------------
    def holder(self, key: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The live claim of another run on ``key`` (its record), or ``None``; a dead or stale one is removed."""
        if key in self.mine:
            return None
        f = self._file(key)
        try:
            mtime = f.stat().st_mtime
            try:
                rec = json.loads(f.read_text())
            except ValueError:
                rec = {}  # being written, or damaged: judged by its age alone
        except FileNotFoundError:
            return None
        except OSError:
            rec, mtime = {}, 0.0  # unreadable: never waited for
        if not isinstance(rec, dict):
            rec = {}
        now = time.time() if now is None else now
        alive = now - mtime < STALE_S
        if alive and rec.get("host") == self.host:
            pid = rec.get("pid")
            alive = isinstance(pid, int) and pid != self.pid and pid_alive(pid)
        if alive:
            return rec
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
        return None

    def wait_target(self, keys: dict[int, str], have: int, *, now: float | None = None) -> int | None:
        """The deepest epoch ``e > have`` whose prefix key another live run claims, else ``None``."""
        for e in sorted((e for e in keys if e > have), reverse=True):
            if self.holder(keys[e], now=now) is not None:
                return e
        return None

    def wait(self, keys: dict[int, str], cached: Callable[[], int], max_wait_s: float,
             sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait while another live run trains a prefix of ``keys`` deeper than the cache holds.

        Args:
            keys: ``{epoch: prefix key}`` of this run's schedule.
            cached: the deepest epoch whose entry the cache holds now (0: none).
            max_wait_s: give up after this many seconds in all.

        Returns:
            Seconds waited (0.0 when nothing was claimed beyond the cache).
        """
        t0 = time.monotonic()
        told: int | None = None
        while True:
            have = cached()
            target = self.wait_target(keys, have)
            waited = time.monotonic() - t0
            if target is None:
                return waited if told is not None else 0.0
            if waited >= max_wait_s:
                self.log(f"prefix cache: stopped waiting for epoch {target} after {waited:.0f} s "
                         f"(execution.prefix_wait_s); training from epoch {have}")
                return waited
            if told != target:
                rec = self.holder(keys[target]) or {}
                self.log(f"prefix cache: waiting for the shared prefix at epoch {target}, which another trial "
                         f"({rec.get('host')}:{rec.get('pid')}) is training (the cache holds {have} epochs)")
                told = target
            sleep(POLL_S)

    # ---- this run's claims -------------------------------------------------------------------
    def claim(self, keys: Iterable[str]) -> list[str]:
        """Claim ``keys`` (those the cache lacks; the caller filters); returns the keys another
        live run holds already (not claimed here)."""
        taken: list[str] = []
        self.root.mkdir(parents=True, exist_ok=True)
        for key in keys:
            if key in self.mine:
                continue
            for _attempt in range(2):  # a dead holder's claim is removed by holder(), then retried once
                try:
                    fd = os.open(self._file(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    if self.holder(key) is not None:
                        taken.append(key)
                        break
                    continue
                with os.fdopen(fd, "w") as fh:
                    fh.write(self._record())
                with self._lock:
                    self.mine.add(key)
                break
        if self.mine and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._refresh_loop, name="prefix-claims", daemon=True)
            self._thread.start()
        return taken

    def release(self, key: str) -> None:
        """Drop this run's claim on ``key`` (its entry is stored, or the run ends)."""
        with self._lock:
            if key in self.mine:
                self.mine.discard(key)
                with contextlib.suppress(FileNotFoundError):
                    self._file(key).unlink()

    def release_all(self) -> None:
        """Drop every claim of this run and stop refreshing them (the run ends)."""
        self._stop.set()
        for key in list(self.mine):
            self.release(key)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def refresh(self) -> None:
        """Mark this run's claims alive (the refresher thread calls it every :data:`REFRESH_S` s)."""
        with self._lock:
            for key in list(self.mine):
                with contextlib.suppress(OSError):
                    atomic_write_text(self._file(key), self._record())

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self.refresh()
