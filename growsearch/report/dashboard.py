"""optuna-dashboard on a study's storage, with objective names and the Pareto figure.

:func:`prepare_study` makes the only writes, both *study system attributes* (never a
trial, never a user attr the search reads):

* ``study:metric_names`` (``study.set_metric_names``) - only when the study has none yet
  and its ``objectives`` user attr names them. The search runner sets the same names at
  study creation, so on a growsearch study this is a no-op; writing a study system attr
  is one row upsert, independent of the trial rows a running search writes, and samplers
  do not read it. It is therefore safe on a running study.
* the Pareto figure (``optuna_dashboard.save_plotly_graph_object``) under the fixed id
  ``growsearch-pareto``, so opening the dashboard again overwrites it instead of piling up
  copies. With ``attach_figure=False`` (``--no-figure``) nothing at all is written.

The server is optuna-dashboard's own WSGI app (``optuna_dashboard.wsgi``) served by
``wsgiref``, bound to 127.0.0.1 unless told otherwise. optuna-dashboard's HTTP API is
unauthenticated and can write (rename, annotate, DELETE studies); optuna-dashboard 0.21 has no
read-only switch, so ``read_only=True`` wraps the app in :func:`read_only_app`, which answers
every request but ``GET``/``HEAD``/``OPTIONS`` with ``403``. :func:`exposure_warning` is what
the command prints when the server is bound to anything but loopback.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from growsearch.errors import ConfigError
from growsearch.report.front import StudyData, objectives_of
from growsearch.report.html import render_scatter, scatter_data
from growsearch.vocabulary import EER

FIGURE_ID = "growsearch-pareto"
#: Non-front trials drawn in the attached figure (it is stored in ~2 kB study system attrs).
FIGURE_BACKGROUND = 1000


def _import_dashboard() -> Any:
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError("optuna-dashboard is not installed (a growsearch dependency): "
                          "pip install -e . again, or pip install optuna-dashboard") from None
    return optuna_dashboard


def pareto_figure(data: StudyData) -> Any | None:
    """The figure attached to the dashboard: EER vs parameters (else the first two objectives)."""
    d = scatter_data(data, "params", EER, max_background=FIGURE_BACKGROUND)
    if d is None and len(data.names) >= 2:
        d = scatter_data(data, data.names[1], data.names[0], max_background=FIGURE_BACKGROUND)
    return None if d is None else render_scatter(d, title=f"growsearch Pareto front: {d.axes[1]} vs {d.axes[0]}")


def prepare_study(study: optuna.Study, data: StudyData, *, attach_figure: bool = True) -> list[str]:
    """Set missing objective names and attach the Pareto figure; returns what was written."""
    done = []
    if not study.metric_names:
        names = [o.name for o in objectives_of(study)]
        if not all(n.startswith("objective_") for n in names):
            study.set_metric_names(names)
            done.append("metric names")
    if attach_figure:
        fig = pareto_figure(data)
        if fig is not None:
            _import_dashboard().save_plotly_graph_object(study, fig, graph_object_id=FIGURE_ID)
            done.append("Pareto figure")
    return done


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


#: HTTP methods that cannot change anything.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only_app(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wrap a WSGI app so that only ``GET``/``HEAD``/``OPTIONS`` reach it; every other method
    (optuna-dashboard's writes: POST, PUT, PATCH, DELETE) gets ``403`` and a JSON reason."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("REQUEST_METHOD", "GET")).upper() in SAFE_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": "growsearch dashboard --read-only: writes are refused"}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return guarded


def is_loopback(host: str) -> bool:
    """``True`` for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, read_only: bool) -> str | None:
    """The loud warning for a dashboard bound beyond loopback (``None`` on loopback)."""
    if is_loopback(host):
        return None
    if read_only:
        return (f"WARNING: optuna-dashboard listens on {host}:{port}, beyond this machine; --read-only refuses writes, "
                "but anyone who can reach it can read every study in this storage (no authentication)")
    return (f"WARNING: optuna-dashboard listens on {host}:{port}, beyond this machine, and its HTTP API is unauthenticated: "
            "anyone who can reach it can change or DELETE studies in this storage. Pass --read-only to refuse writes, "
            "or bind 127.0.0.1 and use an SSH tunnel")


def make_dashboard_server(storage: Any, host: str = "127.0.0.1", port: int = 8080, *, read_only: bool = False) -> WSGIServer:
    """A ``wsgiref`` server for optuna-dashboard on ``storage`` (``port=0``: any free port).

    Args:
        read_only: refuse every write request (see :func:`read_only_app`).

    Raises:
        ConfigError: the address is in use or cannot be bound.
    """
    app = _import_dashboard().wsgi(storage)
    if read_only:
        app = read_only_app(app)
    try:
        return make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"dashboard: cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(server: WSGIServer, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``on_ready(url)`` is called once listening."""
    host, port = cast("tuple[str, int]", server.server_address[:2])  # a TCP server: (host, port[, ...])
    url = f"http://{host}:{port}/dashboard/"
    if on_ready is not None:
        on_ready(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("growsearch: dashboard stopped", file=sys.stderr)
    finally:
        server.server_close()
