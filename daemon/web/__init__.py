"""The web dashboard: pages, a JSON API, /metrics and webhooks around the ledger and the folders.

`security` (who may ask what, which files may be served), `data` (what the pages and the API show and
do), `pages` (HTML), `app` (the Starlette application), `server` (uvicorn in a thread of the service, or
in the foreground for `afx web`), `webhooks` (POSTs about finished jobs), `prometheus` (/metrics).
The service never depends on any of it working: a crash here is logged, never fatal.
"""
