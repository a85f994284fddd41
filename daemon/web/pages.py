"""The dashboard's HTML: plain server-rendered pages, every value escaped where it is written.

Each function takes the data `daemon.web.data` returns and gives a string. Text from files, specs and
track names only ever passes through `esc` (element content and quoted attributes alike), URLs are built
by the server and escaped too, and colours are checked against `#rrggbb` before they reach a style
attribute — so a track called `<script>` shows as text. The one script is static (polling the live part
of the overview); it never builds HTML from data.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable
from typing import Any

from daemon.ratings import STARS

CSS = """
*{box-sizing:border-box}body{font-family:system-ui,sans-serif;background:#111;color:#e8e8e8;margin:0}
nav{background:#1b1b1b;padding:.7rem 1.5rem;display:flex;gap:1.4rem;align-items:center;border-bottom:1px solid #333}
nav a{color:#bbb;text-decoration:none}nav a.on{color:#fff;font-weight:600}nav .brand{color:#7fd;font-weight:700}
nav .ro{margin-left:auto;background:#543;color:#fc9;border-radius:4px;padding:.1rem .5rem;font-size:.85rem}
main{padding:1.2rem 1.5rem}h1{font-size:1.4rem;font-weight:600;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
a{color:#8cf}.muted{color:#999}.small{font-size:.85rem}.err{color:#f99}.ok{color:#9f9}
table{border-collapse:collapse}td,th{border-bottom:1px solid #333;padding:.35rem .6rem;text-align:left;vertical-align:top}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:1rem}
.card{background:#1c1c1c;border-radius:8px;padding:.8rem 1rem;box-shadow:0 2px 8px #0008}
.card img.strip{width:100%;display:block;border-radius:4px}.name{font-weight:600;font-size:1.05rem}
.pill{display:inline-block;border-radius:999px;padding:0 .55rem;background:#333;margin-right:.3rem;font-size:.85rem}
.state-running{background:#246}.state-queued{background:#444}.state-done{background:#253}.state-failed{background:#622}
.state-bad_input{background:#642}.bar{height:10px;background:#333;border-radius:5px;overflow:hidden;width:260px}
.bar div{height:100%;background:#4a8}.swatch{display:inline-block;width:18px;height:18px;border-radius:3px;margin-right:2px}
video{width:100%;max-width:640px;background:#000;border-radius:4px}.render img.strip{max-width:640px}
.render{border-top:1px solid #333;padding-top:.6rem;margin-top:.6rem}
button{background:#2a5d8a;color:#fff;border:0;border-radius:4px;padding:.3rem .8rem;cursor:pointer}
textarea{width:100%;background:#222;color:#eee;border:1px solid #444}label{margin-right:.6rem}
.stars{color:#fc4;letter-spacing:1px}.warn{background:#a40;color:#fff;border-radius:4px;padding:0 .4rem;font-size:.8rem}
"""

LIVE_JS = """
(function(){
  var live=document.getElementById('live'); if(!live) return;
  function tick(){
    fetch('/live/overview',{credentials:'same-origin'}).then(function(r){return r.ok?r.text():null})
      .then(function(t){ if(t!==null){ live.innerHTML=t; live.dataset.updated=Date.now(); } })
      .catch(function(){}).finally(function(){ setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
"""

PAGES = (("/", "Overview"), ("/tracks", "Tracks"), ("/styles", "Styles"), ("/experiments", "Experiments"),
         ("/api", "API"))
COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, active: str, read_only: bool, script: str = "") -> str:
    links = "".join(f'<a href="{href}"{" class=on" if href == active else ""}>{label}</a>' for href, label in PAGES)
    badge = '<span class="ro" title="afx web: no actions without the service">read-only</span>' if read_only else ""
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>afx · {esc(title)}</title><style>{CSS}</style>'
            f'</head><body><nav><span class="brand">afx</span>{links}{badge}</nav><main><h1>{esc(title)}</h1>'
            f'{body}</main>{f"<script>{script}</script>" if script else ""}</body></html>\n')


def action_form(action: str, fields: dict[str, str], label: str, *, csrf: str, css: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in fields.items())
    return (f'<form method="post" action="{esc(action)}" class="{esc(css)}" style="display:inline">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}">{hidden}<button type="submit">{esc(label)}</button>'
            f'</form>')


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    s = int(float(seconds))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def _num(value: Any, digits: int = 3) -> str:
    return "—" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.{digits}f}"


def _pill(state: str) -> str:
    return f'<span class="pill state-{esc(state)}">{esc(state.replace("_", " "))}</span>'


# ── overview ─────────────────────────────────────────────────────────────────────────────────────────────

def overview_live(view: dict[str, Any]) -> str:
    """The part of the overview that refreshes itself: state, running jobs, counts, queue."""
    svc, totals = view["service"], view["totals"]
    workers = ", ".join(map(str, svc.get("workers") or [])) or "—"
    head = (f'<p><span class="pill state-{"running" if svc.get("state") == "running" else "failed"}" id="svc-state">'
            f'{esc(svc.get("state"))}</span> up {_duration(svc.get("uptime_s"))} · devices {esc(workers)}'
            + (f' · pid {esc(svc.get("pid"))} on {esc(svc.get("host"))}' if svc.get("pid") else "") + "</p>")
    counts = "".join(f"<td>{_pill(s)} {int(totals.get(s, 0))}</td>" for s in
                     ("queued", "running", "done", "failed", "bad_input", "superseded"))
    waiting = view.get("waiting") or {}
    rows = []
    for r in view["running"]:
        pct = r.get("percent")
        bar = f'<div class="bar"><div style="width:{float(pct or 0):.1f}%"></div></div>'
        eta = f"ETA {_duration(r['eta_s'])}" if r.get("eta_s") is not None else "starting"
        done = f"{r['done']}/{r['total']} ({pct}%)" if pct is not None else ""
        rows.append(f'<tr class="running-job" data-key="{esc(r["key"])}"><td>{esc(r["job"])}</td>'
                    f'<td>{esc(r.get("device"))}</td><td>{bar}</td><td class="progress">{esc(done)}</td>'
                    f'<td class="eta">{esc(eta)}</td><td>{_duration(r.get("elapsed_s"))}</td></tr>')
    running = (f'<table><tr><th>job</th><th>device</th><th>progress</th><th></th><th>ETA</th><th>elapsed</th></tr>'
               f'{"".join(rows)}</table>') if rows else '<p class="muted">nothing running</p>'
    queue = "".join(f'<tr><td>{i}</td><td>{esc(j["label"])}</td><td>{esc(j["kind"])}</td>'
                    f'<td>{esc(j.get("attempts"))}</td></tr>' for i, j in enumerate(view["queue"], 1))
    queue_html = (f'<table id="queue"><tr><th>#</th><th>job</th><th>kind</th><th>attempts</th></tr>{queue}</table>'
                  if queue else '<p class="muted">the queue is empty</p>')
    return (f'{head}<table><tr>{counts}</tr></table><p class="small muted">{int(waiting.get("backoff", 0))} backing '
            f'off, {int(waiting.get("blocked_by_training", 0))} blocked by a failed training</p>'
            f'<h2>Running</h2>{running}<h2>Queue (in the order it runs)</h2>{queue_html}'
            f'<p class="small muted">updated {esc(time.strftime("%H:%M:%S"))}</p>')


def overview(view: dict[str, Any], *, csrf: str, read_only: bool) -> str:
    failures = []
    for f in view["failures"]:
        retry = "" if read_only else action_form("/actions/retry", {"key": f["key"]}, "Retry", csrf=csrf,
                                                 css="retry")
        report = (f'<details><summary>report</summary><pre class="small">{esc(_report_text(f["report"]))}</pre>'
                  f'</details>') if f.get("report") else ""
        link = f' · <a href="{esc(f["report_url"])}">JSON</a>' if f.get("report_url") else ""
        hint = f.get("hint") if f.get("hint") and f["hint"] not in (f.get("error") or "") else None
        when = str(f.get("time") or "")[:19].replace("T", " ")
        failures.append(f'<tr class="failure" data-key="{esc(f["key"])}"><td class="small">{esc(when)}</td>'
                        f'<td>{esc(f["label"])}</td><td>{_pill(f["state"])}</td><td><span class="err">'
                        f'{esc(f.get("error"))}</span>'
                        + (f'<div class="small muted">{esc(hint)}</div>' if hint else "")
                        + f'{report}{link}</td><td>{retry}</td></tr>')
    failures_html = (f'<table><tr><th>time</th><th>job</th><th>state</th><th>error</th><th></th></tr>'
                     f'{"".join(failures)}</table>') if failures else '<p class="muted">no failures</p>'
    problems = "".join(f'<li><span class="err">{esc(p.get("error"))}</span> <span class="small muted">'
                       f'{esc(p.get("report"))}</span></li>' for p in view.get("problems") or [])
    return (f'<div id="live">{overview_live(view)}</div><h2>Recent failures</h2>{failures_html}'
            + (f"<h2>File problems</h2><ul>{problems}</ul>" if problems else ""))


def _report_text(report: dict[str, Any]) -> str:
    error = report.get("error") or {}
    lines = [f"{k}: {error.get(k)}" for k in ("type", "message", "path", "key", "hint") if error.get(k)]
    if error.get("stderr_tail"):
        lines.append("stderr:\n" + str(error["stderr_tail"]))
    lines += [f"stage: {report.get('stage')}", f"time: {report.get('time')}"]
    return "\n".join(lines)


# ── tracks ───────────────────────────────────────────────────────────────────────────────────────────────

METRICS = (("temporal_ssim_mean", "temporal SSIM"), ("motion_energy", "motion /s"),
           ("onset_alignment", "onset alignment"), ("loud_quiet_contrast", "loud/quiet"),
           ("onset_correlation", "onset corr."))


def tracks(items: list[dict[str, Any]], names: list[str], *, csrf: str, read_only: bool) -> str:
    if not items:
        return '<p class="muted">No tracks yet: drop audio files into the inbox.</p>'
    return "".join(_track(t, names, csrf=csrf, read_only=read_only) for t in items)


def _track(t: dict[str, Any], names: list[str], *, csrf: str, read_only: bool) -> str:
    renders = "".join(_render(r) for r in t["renders"]) or '<p class="muted">no video yet</p>'
    jobs = "".join(f'<li>{esc(j["style"])}{" preview" if j.get("preview") else ""} {_pill(j["state"])} '
                   f'<span class="err small">{esc(j.get("error"))}</span></li>' for j in t["jobs"])
    chosen = t["sidecar"]
    choice = (f'sidecar: {", ".join(esc(s) for s in chosen)}' if chosen is not None
              else "no sidecar: the specs' globs, else the default styles")
    form = "" if read_only else _assign_form(t, names, csrf=csrf)
    return (f'<div class="card track" data-track="{esc(t["rel"])}" style="margin-bottom:1rem">'
            f'<div class="name">{esc(t["rel"])}</div><div class="small muted">sha256 {esc(t["sha256"][:16])} · '
            f'{choice}</div>{form}{renders}' + (f"<ul>{jobs}</ul>" if jobs else "") + "</div>")


def _assign_form(t: dict[str, Any], names: list[str], *, csrf: str) -> str:
    chosen = set(t["sidecar"] or [])
    boxes = "".join(f'<label><input type="checkbox" name="styles" value="{esc(n)}"{" checked" if n in chosen else ""}>'
                    f' {esc(n)}</label>' for n in names)
    return (f'<form method="post" action="/actions/assign" class="assign small" style="margin:.4rem 0">'
            f'<input type="hidden" name="csrf" value="{esc(csrf)}"><input type="hidden" name="track" '
            f'value="{esc(t["path"])}">styles: {boxes or "<span class=muted>no specs</span>"} '
            f'<button type="submit">Save styles</button></form>')


def _render(r: dict[str, Any]) -> str:
    m, timing = r["metrics"], r["timing"]
    cells = "".join(f"<tr><td>{esc(label)}</td><td>{_num(m.get(key))}</td></tr>" for key, label in METRICS)
    cells += (f"<tr><td>real-time factor</td><td>{_num(timing.get('realtime_factor'), 2)}×</td></tr>"
              f"<tr><td>device</td><td>{esc(r.get('device'))}</td></tr>")
    if r.get("palette_match") is not None:
        cells += f"<tr><td>palette match</td><td>{_num(r['palette_match'])}</td></tr>"
    highlight = r.get("highlight") or {}
    if highlight:
        cells += f"<tr><td>highlight</td><td>from {_num(highlight.get('start_s'), 1)} s</td></tr>"
    video = (f'<video controls preload="metadata" src="{esc(r["video_url"])}"></video>' if r.get("video_url")
             else "")
    sheet = f'<img class="strip" alt="contact sheet" src="{esc(r["sheet_url"])}">' if r.get("sheet_url") else ""
    report = f' · <a href="{esc(r["report_url"])}">report</a>' if r.get("report_url") else ""
    kind = ' <span class="pill state-queued">preview</span>' if r.get("preview") else ""
    return (f'<div class="render{" preview" if r.get("preview") else ""}" data-style="{esc(r["style"])}"><div>'
            f'<b>{esc(r["style"])}</b>{kind} <span class="small muted">{esc(r.get("size"))}{report}</span></div>'
            f'{video}{sheet}'
            f'<table class="small">{cells}</table></div>')


# ── styles, experiments ──────────────────────────────────────────────────────────────────────────────────

def styles(items: list[dict[str, Any]], *, csrf: str, read_only: bool) -> str:
    if not items:
        return '<p class="muted">The library is empty: the service trains the styles in specs/.</p>'
    return f'<div class="grid">{"".join(_style(s, csrf=csrf, read_only=read_only) for s in items)}</div>'


def _style(s: dict[str, Any], *, csrf: str, read_only: bool) -> str:
    preview = f'<img class="strip" alt="preview" src="{esc(s["preview_url"])}">' if s.get("preview_url") else ""
    curve = (f'<details><summary class="small">training curve</summary><img class="strip" alt="training curve" '
             f'src="{esc(s["curve_url"])}"></details>') if s.get("curve_url") else ""
    palette = "".join(f'<span class="swatch" title="{esc(c)}" style="background:{c}"></span>'
                      for c in _colours(s.get("palette")))
    prompts = "".join(f"<div class=\"small\" style=\"color:#cfc\">“{esc(p)}”</div>" for p in s["prompts"])
    m = s["metrics"]
    metrics = " · ".join(f"{esc(label)} {_num(m.get(key))}" for key, label in METRICS if key in m)
    warn = "" if s["trained_guidance"] else ' <span class="warn">untrained guidance</span>'
    rating = s.get("rating")
    shown = (f'<span class="stars">{"★" * rating["stars"]}{"☆" * (5 - rating["stars"])}</span> '
             f'<span class="small">{esc(rating["note"])}</span>') if rating else '<span class="muted">unrated</span>'
    form = "" if read_only else _rate_form(s, csrf=csrf)
    return (f'<div class="card style" data-style="{esc(s["name"])}" data-id="{esc(s["id"])}">{preview}'
            f'<div class="name">{esc(s["name"])}{warn}</div>{prompts}<div>{palette}</div>'
            f'<div class="small muted">{esc(s.get("clip_model"))} · similarity {_num(s.get("similarity"), 4)} · '
            f'{esc(s.get("seconds"))} s · {esc(str(s.get("created"))[:16])} · id {esc(s["id"])}</div>'
            f'<div class="small muted">{metrics}</div>{curve}<div class="rating">{shown}</div>{form}</div>')


def _colours(palette: Any) -> Iterable[str]:
    return [c for c in palette if isinstance(c, str) and COLOUR.match(c)] if isinstance(palette, list) else []


def _rate_form(s: dict[str, Any], *, csrf: str) -> str:
    current = (s.get("rating") or {}).get("stars")
    radios = "".join(f'<label><input type="radio" name="stars" value="{n}"{" checked" if n == current else ""}>'
                     f"{n}</label>" for n in STARS)
    return (f'<form method="post" action="/actions/rate" class="rate small"><input type="hidden" name="csrf" '
            f'value="{esc(csrf)}"><input type="hidden" name="name" value="{esc(s["name"])}"><input type="hidden" '
            f'name="id" value="{esc(s["id"])}">{radios}<textarea name="note" rows="2" placeholder="a note">'
            f'{esc((s.get("rating") or {}).get("note", ""))}</textarea><button type="submit">Rate</button></form>')


def experiments(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<p class="muted">No sweeps yet: a spec with a [sweep] table gets a comparison page here.</p>'
    rows = "".join(f'<div class="card"><div class="name"><a href="{esc(e["url"])}">{esc(e["title"])}</a></div>'
                   f'<div class="small muted">{int(e["variants"])} variants · {esc(e["updated"])}</div>'
                   + (f'<img class="strip" alt="contact sheet" src="{esc(e["sheet_url"])}">' if e.get("sheet_url")
                      else "") + "</div>" for e in items)
    return f'<div class="grid">{rows}</div>'


def message(text: str, *, ok: bool) -> str:
    return f'<p class="{"ok" if ok else "err"}">{esc(text)}</p><p><a href="/">back to the overview</a></p>'


def api_index(routes: list[tuple[str, str, str]]) -> str:
    rows = "".join(f"<tr><td>{esc(m)}</td><td><code>{esc(p)}</code></td><td>{esc(d)}</td></tr>" for m, p, d in routes)
    return (f'<p>The OpenAPI document: <a href="/api/openapi.json">/api/openapi.json</a>. Prometheus: '
            f'<a href="/metrics">/metrics</a>.</p><table>{rows}</table>')
