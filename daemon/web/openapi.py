"""The JSON API's routes and its OpenAPI 3.1 document (served at /api/openapi.json).

One table, `API_ROUTES`, lists every route: the application registers its API routes from it and the
document is generated from it, so the two cannot drift apart (a test checks every route answers).
"""

from __future__ import annotations

from typing import Any

from daemon import __version__

OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ERROR: dict[str, Any] = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}

RETRY_BODY: dict[str, Any] = {"type": "object", "properties": {"key": {"type": "string", "description": "the job's key"}},
                              "required": ["key"]}
ASSIGN_BODY: dict[str, Any] = {
    "type": "object", "required": ["track", "styles"],
    "properties": {"track": {"type": "string", "description": "the track's absolute path, as /api/tracks gives it"},
                   "styles": {"type": "array", "items": {"type": "string"},
                              "description": "style names; empty removes the sidecar (default styles again)"}}}
RATE_BODY: dict[str, Any] = {
    "type": "object", "required": ["name", "id", "stars"],
    "properties": {"name": {"type": "string"}, "id": {"type": "string", "description": "the style version's id"},
                   "stars": {"type": "integer", "minimum": 1, "maximum": 5},
                   "note": {"type": "string", "maxLength": 2000}}}

#: (method, path, summary, request body schema or None)
API_ROUTES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("GET", "/api/status", ("service state, uptime, devices, running jobs with progress and ETA, counts by state, "
                            "the queue in order, recent failures with their reports"), None),
    ("GET", "/api/jobs", "running jobs, the queue in order and recent failures", None),
    ("GET", "/api/tracks", "every track with its published videos (report metrics) and its sidecar styles", None),
    ("GET", "/api/styles", "every style version in the library with its metrics and rating", None),
    ("GET", "/api/experiments", "every sweep's comparison page", None),
    ("GET", "/api/session", "the CSRF token for POSTs without a bearer token, and whether this is read-only", None),
    ("GET", "/api/openapi.json", "this document", None),
    ("POST", "/api/retry", "requeue a failed or bad-input job (as `afx retry`)", RETRY_BODY),
    ("POST", "/api/assign", "choose a track's styles: writes its sidecar `<track stem>.toml`", ASSIGN_BODY),
    ("POST", "/api/rate", "rate a style version 1-5 with a note (stored in the library beside it)", RATE_BODY),
    ("GET", "/metrics", "Prometheus metrics (text exposition format)", None),
)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, summary, body in API_ROUTES:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": {"description": "OK", "content": {
                "text/plain" if path == "/metrics" else "application/json": {"schema": {} if path == "/metrics"
                                                                             else OBJECT}}}}}
        if method == "POST":
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            operation["security"] = [{"bearer": []}, {"csrf": []}]
            for status, text in (("400", "the action was refused (its message says why)"),
                                 ("403", "read-only (`afx web`), wrong CSRF token or a cross-site Origin")):
                operation["responses"][status] = {"description": text,
                                                  "content": {"application/json": {"schema": ERROR}}}
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "afx dashboard API", "version": __version__,
                 "description": "The data and actions of the afx dashboard (docs/SERVICE.md, *The dashboard*). "
                                "On a loopback address without a token, GETs are open and POSTs need the "
                                "X-CSRF-Token header from /api/session; with a token, every request needs "
                                "`Authorization: Bearer TOKEN`."},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "[web] token or token_file"},
            "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                     "description": "from GET /api/session"}}},
    }
