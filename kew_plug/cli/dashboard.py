"""`kew-plug dashboard URL`: one process serving a page that refreshes itself, with the
queues, running tasks, dead letters (requeue button) and live workers of a store.

Safety: it binds 127.0.0.1 by default; bound elsewhere it refuses to start without a token,
and then every request must carry it (`?token=` once, kept in a cookie, or a bearer
header). Requeue is a POST checked against a CSRF token held in a SameSite cookie and the
form; `--read-only` removes it."""

from __future__ import annotations

import contextlib
import datetime
import hmac
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from kew_plug.cli import inspect
from kew_plug.cli.targets import UsageError
from kew_plug.interfaces import Store

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _when(epoch_ms: float | None) -> str:
    if epoch_ms is None:
        return "-"
    at = datetime.datetime.fromtimestamp(epoch_ms / 1000)
    return at.isoformat(sep=" ", timespec="seconds")


async def snapshot(store: Store, limit: int = 50) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data (also served at /api/state)."""
    state = await inspect.stats(store, None)
    running, dead = [], []
    for q in state["queues"]:
        for r in await store.running(q["name"], limit):
            running.append(
                {"queue": q["name"], "id": r.id, "deadline_ms": r.deadline_ms, "worker": r.worker}
            )
        if q["dead"]:
            found = await inspect.dead(store, q["name"], limit)
            dead += [{"queue": q["name"], **t} for t in found["tasks"]]
    workers = (await inspect.workers(store))["workers"]
    return {**state, "running": running, "dead": dead, "worker_list": workers}


def create_app(
    make_store: Callable[[], Store],
    *,
    target: str,
    namespace: str,
    read_only: bool = False,
    token: str | None = None,
    refresh: int = 2,
) -> Starlette:
    csrf = secrets.token_urlsafe(32)
    holder: dict[str, Store] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        holder["store"] = make_store()  # on the server's own event loop
        try:
            yield
        finally:
            await holder["store"].aclose()

    def allowed(request: Request) -> bool:
        if token is None:
            return True
        given = (
            request.query_params.get("token")
            or request.cookies.get("kew_token")
            or request.headers.get("authorization", "").removeprefix("Bearer ")
        )
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(
        view: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def check(request: Request) -> Response:
            if not allowed(request):
                return PlainTextResponse("a token is required", status_code=401)
            response = await view(request)
            if token is not None and request.query_params.get("token"):
                response.set_cookie("kew_token", token, httponly=True, samesite="strict")
            return response

        return check

    async def page(request: Request) -> Response:
        data = await snapshot(holder["store"])
        html = TEMPLATES.get_template("dashboard.html").render(
            target=target,
            namespace=namespace,
            refresh=refresh,
            now=_when(datetime.datetime.now().timestamp() * 1000),
            queues=data["queues"],
            workers_by_queue=data["workers_by_queue"],
            running=[{**r, "deadline": _when(r["deadline_ms"])} for r in data["running"]],
            dead=[
                {
                    **d,
                    "died": _when(None if d["died_at"] is None else d["died_at"] * 1000),
                    "traceback": "\n".join(d["traceback_tail"]),
                }
                for d in data["dead"]
            ],
            workers=[{**w, "started": _when(w["started_at"] * 1000)} for w in data["worker_list"]],
            read_only=read_only,
            csrf=csrf,
            message=request.query_params.get("message"),
        )
        response = HTMLResponse(html)
        response.set_cookie("kew_csrf", csrf, httponly=True, samesite="strict")
        return response

    async def state(request: Request) -> Response:
        return JSONResponse(await snapshot(holder["store"]))

    async def requeue(request: Request) -> Response:
        if read_only:
            return PlainTextResponse("this dashboard is read-only", status_code=403)
        form = await request.form()
        sent, cookie = str(form.get("csrf", "")), request.cookies.get("kew_csrf", "")
        if not (hmac.compare_digest(sent, csrf) and hmac.compare_digest(cookie, csrf)):
            return PlainTextResponse("missing or wrong CSRF token", status_code=403)
        queue, task_id = str(form.get("queue", "")), str(form.get("id", ""))
        (done,) = await holder["store"].requeue(queue, [task_id])
        message = f"requeued {task_id}" if done else f"{task_id} was not dead"
        return RedirectResponse(f"./?message={message}", status_code=303)

    return Starlette(
        routes=[
            Route("/", guarded(page)),
            Route("/api/state", guarded(state)),
            Route("/requeue", guarded(requeue), methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def serve(
    url: str,
    namespace: str | None,
    *,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
) -> None:
    import uvicorn

    from kew_plug.registry import make_store

    if host not in LOOPBACK and not token:
        raise UsageError(f"bound to {host}, the dashboard needs --token (or KEW_PLUG_TOKEN)")
    options = {} if namespace is None else {"namespace": namespace}
    app = create_app(
        lambda: make_store(url, **options),
        target=url.split("@")[-1],  # never show credentials
        namespace=namespace or "kew",
        read_only=read_only,
        token=token,
    )
    # Bound here, so that a port in use is one line (exit 2) and the URL is printed only
    # once it answers; uvicorn's own start message is below its log level.
    try:
        # The family the name resolves to (a name may resolve to IPv6 only).
        family, _, _, _, address = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )[0]
        sock = socket.create_server(address[:2], family=family)
    except OSError as e:
        raise UsageError(f"cannot listen on {host} port {port}: {e.strerror or e}") from None
    shown = f"[{host}]" if ":" in host else host
    print(f"kew-plug dashboard: serving http://{shown}:{sock.getsockname()[1]}/", file=sys.stderr)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
