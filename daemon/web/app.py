"""The dashboard as a Starlette application: pages, actions, files, the JSON API, OpenAPI and /metrics.

`create_app` builds it over a config; the service serves it in a thread (daemon.web.server) and `afx web`
serves it read-only. Every handler reads the ledger and the folders through daemon.web.data, so the two
show the same. Access rules are daemon.web.security's; this module only applies them:
`Guard` (every request) checks the Host header and the token, `_action` (every POST) the CSRF token or
the bearer token and the Origin.
"""

from __future__ import annotations

import json
import subprocess
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from daemon.config import ServiceConfig
from daemon.errors import AfxError
from daemon.logs import get_logger
from daemon.web import data, pages
from daemon.web.openapi import API_ROUTES, openapi_document
from daemon.web.prometheus import exposition, metrics_registry
from daemon.web.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    TOKEN_COOKIE,
    WebAccess,
    host_allowed,
    safe_file,
    same_origin,
)

log = get_logger("afx.web")

SHEET_TILES = 6  # frames in a render's contact sheet
SHEET_CACHE = 64  # contact sheets kept in memory
READ_ONLY = "read-only: `afx web` shows the service's state without acting on it; actions need `afx run`"

Handler = Callable[[Request], Awaitable[Response]]


class Guard(BaseHTTPMiddleware):
    """Host header and token for every request (daemon.web.security has the rules)."""

    def __init__(self, app: Any, access: WebAccess) -> None:
        super().__init__(app)
        self.access = access

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        access = self.access
        if not host_allowed(access, request.headers.get("host")):
            return _refuse(request, 403, "this dashboard answers only to localhost (the Host header names another)")
        if access.token is None:
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and request.method == "GET" and access.token_ok(given):
            rest = urlencode([(k, v) for k, v in parse_qsl(request.url.query) if k != "token"])
            response: Response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
            return response
        if access.token_ok(_bearer(request)) or access.token_ok(request.cookies.get(TOKEN_COOKIE)):
            return await call_next(request)
        return _refuse(request, 401, "this dashboard needs its token: open it once as …/?token=TOKEN, or send "
                                     "`Authorization: Bearer TOKEN`")


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _refuse(request: Request, status: int, text: str) -> Response:
    if request.url.path.startswith("/api/") or request.url.path == "/metrics":
        return JSONResponse({"error": text}, status_code=status)
    return HTMLResponse(pages.page("refused", pages.message(text, ok=False), active="", read_only=False),
                        status_code=status)


class Dashboard:
    """The handlers, over one config and one access policy."""

    def __init__(self, config: ServiceConfig, access: WebAccess, *, read_only: bool) -> None:
        self.config = config
        self.access = access
        self.read_only = read_only
        self.registry = metrics_registry(config)
        self.sheets: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def _page(self, title: str, body: str, active: str, script: str = "") -> HTMLResponse:
        return HTMLResponse(pages.page(title, body, active=active, read_only=self.read_only, script=script))

    # ── pages ────────────────────────────────────────────────────────────────────────────────────────────

    async def overview(self, request: Request) -> Response:
        view = await run_in_threadpool(data.overview, self.config)
        return self._page("Overview", pages.overview(view, csrf=self.access.csrf, read_only=self.read_only), "/",
                          pages.LIVE_JS)

    async def overview_live(self, request: Request) -> Response:
        view = await run_in_threadpool(data.overview, self.config)
        return HTMLResponse(pages.overview_live(view), headers={"cache-control": "no-store"})

    async def tracks(self, request: Request) -> Response:
        items = await run_in_threadpool(data.tracks, self.config)
        names = await run_in_threadpool(data.style_names, self.config)
        for track in items:
            for render in track["renders"]:
                render["sheet_url"] = render["sheet_url"] or _sheet_url(render.get("video_url"))
        return self._page("Tracks", pages.tracks(items, names, csrf=self.access.csrf, read_only=self.read_only),
                          "/tracks")

    async def styles(self, request: Request) -> Response:
        items = await run_in_threadpool(data.styles, self.config)
        return self._page("Styles", pages.styles(items, csrf=self.access.csrf, read_only=self.read_only), "/styles")

    async def experiments(self, request: Request) -> Response:
        items = await run_in_threadpool(data.experiments, self.config)
        return self._page("Experiments", pages.experiments(items), "/experiments")

    async def api_index(self, request: Request) -> Response:
        return self._page("API", pages.api_index([(m, p, d) for m, p, d, _ in API_ROUTES]), "/api")

    # ── files ────────────────────────────────────────────────────────────────────────────────────────────

    async def files(self, request: Request) -> Response:
        root, rel = request.path_params["root"], request.path_params["path"]
        if root not in ("renders", "library"):
            return _refuse(request, 404, "files are served from renders/ and library/ only")
        path = safe_file(self.config.path(root), rel)
        if path is None:
            return _refuse(request, 404, "no such file in " + root)
        return FileResponse(path, headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})

    async def sheet(self, request: Request) -> Response:
        """A render's contact sheet: SHEET_TILES frames side by side, made by ffmpeg on first request."""
        path = safe_file(self.config.path("renders"), request.path_params["path"])
        if path is None or path.suffix != ".mp4":
            return _refuse(request, 404, "no such video in renders")
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self.sheets:
            png = await run_in_threadpool(contact_sheet, path)
            if png is None:
                return _refuse(request, 404, "ffmpeg could not read this video")
            self.sheets[key] = png
            while len(self.sheets) > SHEET_CACHE:
                self.sheets.popitem(last=False)
        return Response(self.sheets[key], media_type="image/png")

    # ── actions (forms) ──────────────────────────────────────────────────────────────────────────────────

    async def action(self, request: Request) -> Response:
        form = await request.form()
        refused = self._check_action(request, str(form.get(CSRF_FIELD) or "") or None)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        try:
            if name == "retry":
                result = await run_in_threadpool(data.retry, self.config, str(form.get("key") or ""))
                back, text = "/", f"requeued {result['requeued']}"
            elif name == "assign":
                chosen = [str(s) for s in form.getlist("styles")]
                result = await run_in_threadpool(data.assign, self.config, str(form.get("track") or ""), chosen)
                back, text = "/tracks", f"wrote {result['sidecar']}"
            elif name == "rate":
                result = await run_in_threadpool(data.rate, self.config, str(form.get("name") or ""),
                                                 str(form.get("id") or ""), _int(form.get("stars")),
                                                 str(form.get("note") or ""))
                back, text = "/styles", f"rated {result['name']}"
            else:
                return _refuse(request, 404, f"no action {name!r}")
        except AfxError as e:
            return HTMLResponse(pages.page("not done", pages.message(e.user_line(), ok=False), active="",
                                           read_only=self.read_only), status_code=400)
        log.info("web.action", action=name, result=text)
        return RedirectResponse(back, status_code=303)

    def _check_action(self, request: Request, csrf: str | None) -> Response | None:
        if self.read_only:
            return _refuse(request, 403, READ_ONLY)
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return _refuse(request, 403, "a form from another site may not act on this dashboard")
        bearer = _bearer(request)
        if self.access.token is not None and bearer is not None and self.access.token_ok(bearer):
            return None
        if self.access.csrf_ok(csrf or request.headers.get(CSRF_HEADER)):
            return None
        return _refuse(request, 403, "missing or wrong CSRF token: reload the page and try again")

    # ── the JSON API ─────────────────────────────────────────────────────────────────────────────────────

    async def api_get(self, request: Request) -> Response:
        what = request.url.path.removeprefix("/api/")
        if what == "openapi.json":
            return JSONResponse(openapi_document())
        if what == "session":
            return JSONResponse({"csrf": self.access.csrf, "read_only": self.read_only,
                                 "token_required": self.access.token is not None})
        readers: dict[str, Callable[[ServiceConfig], Any]] = {
            "status": data.overview, "tracks": data.tracks, "styles": data.styles,
            "experiments": data.experiments, "jobs": _jobs}
        return JSONResponse(await run_in_threadpool(readers[what], self.config))

    async def api_post(self, request: Request) -> Response:
        refused = self._check_action(request, None)
        if refused is not None:
            return refused
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        what = request.url.path.removeprefix("/api/")
        try:
            if what == "retry":
                result = await run_in_threadpool(data.retry, self.config, str(body.get("key") or ""))
            elif what == "assign":
                chosen = body.get("styles")
                if not isinstance(chosen, list) or not all(isinstance(s, str) for s in chosen):
                    return JSONResponse({"error": "styles must be a list of style names"}, status_code=400)
                result = await run_in_threadpool(data.assign, self.config, str(body.get("track") or ""), chosen)
            else:
                result = await run_in_threadpool(data.rate, self.config, str(body.get("name") or ""),
                                                 str(body.get("id") or ""), _int(body.get("stars")),
                                                 str(body.get("note") or ""))
        except AfxError as e:
            return JSONResponse({"error": e.user_line()}, status_code=400)
        log.info("web.action", action=what, via="api")
        return JSONResponse(result)

    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(exposition, self.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _jobs(config: ServiceConfig) -> dict[str, Any]:
    view = data.overview(config)
    return {k: view[k] for k in ("running", "queue", "failures")}


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _sheet_url(video_url: str | None) -> str | None:
    prefix = "/files/renders/"
    return "/sheet/renders/" + video_url[len(prefix):] if video_url and video_url.startswith(prefix) else None


def contact_sheet(video: Path) -> bytes | None:
    """SHEET_TILES evenly spaced frames of a video side by side, as PNG bytes (None when ffmpeg fails)."""
    frames = 0
    report = data.read_json(video.with_suffix(".json")) or {}
    frames = int((report.get("video") or {}).get("frames") or 0)
    step = max(1, frames // SHEET_TILES) if frames else 30
    try:
        out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-vf",
                              f"select=not(mod(n\\,{step})),scale=160:-2,tile={SHEET_TILES}x1", "-frames:v", "1",
                              "-f", "image2pipe", "-vcodec", "png", "-"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 and out.stdout else None


def create_app(config: ServiceConfig, access: WebAccess, *, read_only: bool) -> Starlette:
    d = Dashboard(config, access, read_only=read_only)
    routes = [
        Route("/", d.overview), Route("/live/overview", d.overview_live), Route("/tracks", d.tracks),
        Route("/styles", d.styles), Route("/experiments", d.experiments), Route("/api", d.api_index),
        Route("/files/{root}/{path:path}", d.files), Route("/sheet/renders/{path:path}", d.sheet),
        Route("/actions/{name}", d.action, methods=["POST"]), Route("/metrics", d.metrics),
    ]
    for method, path, _, _ in API_ROUTES:
        if path.startswith("/api/"):
            routes.append(Route(path, d.api_get if method == "GET" else d.api_post, methods=[method]))
    return Starlette(routes=routes, middleware=[Middleware(Guard, access=access)])
