#!/usr/bin/env python3
"""Container health check for the growsearch image; exit 0 = healthy, 1 = unhealthy.

The role comes from ``$GROWSEARCH_ROLE`` (or the first argument):

- ``cli`` (default): the package imports and the ``growsearch`` entry point answers;
- ``ray-head``: the Ray GCS on ``$RAY_HEALTH_ADDRESS`` (default ``127.0.0.1:6379``) answers;
- ``ray-worker``: the head's GCS (``$RAY_HEALTH_ADDRESS``, default ``ray-head:6379``) answers
  and this node's raylet is running;
- ``dashboard``: ``GET http://127.0.0.1:$PORT/api/studies`` (``$DASHBOARD_PORT``, default
  8080) returns 200.

Output is one line on stderr; no URL, password or token is ever printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

ROLES = ("cli", "ray-head", "ray-worker", "dashboard")


def _run(argv: list[str], timeout: float) -> bool:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_cli() -> bool:
    """The package imports and its entry point answers ``--version``."""
    return _run(["growsearch", "--version"], timeout=15)


def check_ray(address: str) -> bool:
    """The Ray GCS at ``address`` answers (``ray health-check``; honours $RAY_AUTH_TOKEN)."""
    return _run(["ray", "health-check", "--address", address], timeout=15)


def raylet_running() -> bool:
    """A raylet process runs in this container (read from /proc; no psutil needed)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0]
        except OSError:
            continue
        if cmd.endswith(b"/raylet") or cmd == b"raylet":
            return True
    return False


def check_http(port: int, path: str = "/api/studies") -> bool:
    """``GET http://127.0.0.1:<port><path>`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:  # loopback only
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    role = (argv[1] if len(argv) > 1 else os.environ.get("GROWSEARCH_ROLE", "cli")).strip()
    if role == "cli":
        ok = check_cli()
    elif role == "ray-head":
        ok = check_ray(os.environ.get("RAY_HEALTH_ADDRESS", "127.0.0.1:6379"))
    elif role == "ray-worker":
        ok = raylet_running() and check_ray(os.environ.get("RAY_HEALTH_ADDRESS", "ray-head:6379"))
    elif role == "dashboard":
        port_s = os.environ.get("DASHBOARD_PORT", "8080")
        if not port_s.isdigit():
            print(f"healthcheck: DASHBOARD_PORT must be a port number (got {port_s!r})", file=sys.stderr)
            return 1
        ok = check_http(int(port_s))
    else:
        print(f"healthcheck: unknown GROWSEARCH_ROLE {role!r}; valid: {', '.join(ROLES)}", file=sys.stderr)
        return 1
    print(f"healthcheck: {role}: {'healthy' if ok else 'UNHEALTHY'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
