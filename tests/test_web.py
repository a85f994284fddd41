"""The dashboard (issue 13) without a browser: config and access rules, pages, files, actions, the JSON API,
/metrics, webhooks, and that a crash of the web part never stops the service. The pages are driven in a real
browser by tests/test_web_browser.py."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from daemon.config import WebSettings, load_config
from daemon.errors import ConfigError
from daemon.ratings import read_rating
from daemon.service.ledger import Ledger
from daemon.web.app import create_app
from daemon.web.openapi import API_ROUTES
from daemon.web.security import parse_listen, safe_file, web_access
from daemon.web.server import WebServer
from daemon.web.webhooks import Webhooks
from tests.web_world import EVIL, EVIL_TRACK, STYLE_ID, World, build_world

TOKEN = "s3cret-token-0123456789"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def client(world: World, *, read_only: bool = False, host: str = "127.0.0.1:8750") -> TestClient:
    return TestClient(create_app(world.config, web_access(world.config), read_only=read_only),
                      base_url=f"http://{host}", follow_redirects=False)


def csrf(c: TestClient) -> str:
    return str(c.get("/api/session").json()["csrf"])


def job_state(world: World, key: str) -> str:
    ledger = Ledger(world.root / "state" / "ledger.sqlite3", create=False)
    try:
        job = ledger.get(key)
        assert job is not None
        return job.state
    finally:
        ledger.close()


# ── config and access ────────────────────────────────────────────────────────────────────────────────────

def test_web_config_defaults_and_listen_parsing(tmp_path: Path) -> None:
    assert WebSettings().listen == "127.0.0.1:8750" and WebSettings().enabled
    assert parse_listen("[::1]:8750") == ("::1", 8750)
    for bad in ("8750", "localhost:", "host:99999"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)
    (tmp_path / "afx.toml").write_text('[web]\nlisten = "0.0.0.0:8750"\nwebhoks = []\n')
    with pytest.raises(ConfigError, match="webhoks") as caught:  # a typo names the nearest key
        load_config(tmp_path / "afx.toml")
    assert caught.value.hint == "did you mean 'web.webhooks'?"


def test_another_address_needs_a_token_or_the_service_refuses_to_start(tmp_path: Path) -> None:
    from daemon.service.service import Service

    world = build_world(tmp_path, web='listen = "0.0.0.0:0"')
    with pytest.raises(ConfigError, match="without a token"):
        web_access(world.config)
    with pytest.raises(ConfigError, match="without a token"):
        Service(world.config).start()
    assert not (world.root / "state" / "service.lock").exists()  # refused before taking anything
    (tmp_path / "afx.toml").write_text('[web]\nlisten = "0.0.0.0:0"\ntoken = "short"\n')
    with pytest.raises(ConfigError, match="at least 16"):
        web_access(load_config(tmp_path / "afx.toml"))
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "afx.toml").write_text('[web]\nlisten = "0.0.0.0:0"\ntoken_file = "token"\n')
    assert web_access(load_config(tmp_path / "afx.toml")).token == TOKEN
    (tmp_path / "token").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        web_access(load_config(tmp_path / "afx.toml"))
    (tmp_path / "afx.toml").write_text('[web]\nenabled = false\nwebhooks = ["http://127.0.0.1:9/", "file:///etc/x"]\n')
    with pytest.raises(ConfigError, match="file:///etc/x") as caught:
        Service(load_config(tmp_path / "afx.toml")).start()  # webhooks are checked with the dashboard off too
    assert caught.value.key == "web.webhooks[1]"


def test_loopback_answers_only_to_loopback_host_names(world: World) -> None:
    assert client(world).get("/").status_code == 200
    assert client(world, host="localhost:8750").get("/").status_code == 200
    assert client(world, host="[::1]:8750").get("/").status_code == 200
    assert client(world, host="evil.example:8750").get("/").status_code == 403  # DNS rebinding


def test_a_token_guards_every_request(tmp_path: Path) -> None:
    world = build_world(tmp_path, web=f'listen = "0.0.0.0:0"\ntoken = "{TOKEN}"')
    c = client(world, host="dashboard.lan:8750")
    for path in ("/", "/api/status", "/metrics", f"/files/renders/{world.video.parent.name}/neon.mp4"):
        assert c.get(path).status_code == 401, path
    assert c.get("/api/status", headers={"authorization": "Bearer wrong-token-0123456"}).status_code == 401
    assert c.get("/api/status", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    r = c.get(f"/tracks?token={TOKEN}&x=1")
    assert r.status_code == 303 and r.headers["location"] == "/tracks?x=1"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/tracks").status_code == 200  # the cookie
    # a bearer token is enough for an action; the cookie alone is not (it is sent cross-site too)
    assert c.post("/api/retry", json={"key": world.failed_key}).status_code == 403
    r = c.post("/api/retry", json={"key": world.failed_key}, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and job_state(world, world.failed_key) == "queued"


def test_every_action_needs_the_csrf_token_and_the_same_origin(world: World) -> None:
    c = client(world)
    form = {"key": world.failed_key}
    assert c.post("/actions/retry", data=form).status_code == 403
    assert c.post("/actions/retry", data={**form, "csrf": "forged"}).status_code == 403
    assert c.post("/api/retry", json=form).status_code == 403
    token = csrf(c)
    assert c.post("/actions/retry", data={**form, "csrf": token},
                  headers={"origin": "http://evil.example"}).status_code == 403
    assert job_state(world, world.failed_key) == "bad_input"
    assert c.get("/actions/retry").status_code == 405  # never a GET
    r = c.post("/actions/retry", data={**form, "csrf": token}, headers={"origin": "http://127.0.0.1:8750"})
    assert r.status_code == 303 and job_state(world, world.failed_key) == "queued"


def test_files_only_from_renders_and_library(world: World, tmp_path: Path) -> None:
    c = client(world)
    rel = world.video.relative_to(world.config.path("renders")).as_posix()
    assert c.get(f"/files/renders/{rel}").status_code == 200
    assert c.get("/files/library/_sweeps/organic/comparison.html").status_code == 200
    (tmp_path / "secret.txt").write_text("secret")
    (world.config.path("renders") / "link.txt").symlink_to(tmp_path / "secret.txt")
    (world.config.path("renders") / "inside.mp4").symlink_to(world.video)
    assert c.get("/files/renders/inside.mp4").status_code == 200  # a link that stays inside is fine
    for path in ("/files/renders/link.txt", "/files/renders/..%2fsecret.txt", "/files/renders/%2e%2e/secret.txt",
                 "/files/renders/../secret.txt", "/files/state/ledger.sqlite3", "/files/inbox/calm.wav",
                 "/files/renders/%2Fetc%2Fpasswd", "/files/renders/.store/x.mp4", "/files/renders/"):
        r = c.get(path, follow_redirects=True)
        assert r.status_code == 404 and "secret" not in r.text, path
    root = world.config.path("renders")
    assert safe_file(root, "../secret.txt") is None and safe_file(root, "/etc/passwd") is None
    assert safe_file(root, "link.txt") is None and safe_file(root, rel) == world.video.resolve()


def test_videos_answer_range_requests(world: World) -> None:
    c = client(world)
    url = "/files/renders/" + world.video.relative_to(world.config.path("renders")).as_posix()
    size = world.video.stat().st_size
    r = c.get(url, headers={"range": "bytes=100-199"})
    assert r.status_code == 206 and len(r.content) == 100
    assert r.headers["content-range"] == f"bytes 100-199/{size}" and r.headers["accept-ranges"] == "bytes"
    assert r.content == world.video.read_bytes()[100:200]
    assert r.headers["content-type"] == "video/mp4"
    sheet = c.get(url.replace("/files/", "/sheet/", 1))
    assert sheet.status_code == 200 and sheet.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_output_is_escaped_everywhere(world: World) -> None:
    c = client(world)
    c.post("/actions/rate", data={"csrf": csrf(c), "name": "neon", "id": STYLE_ID, "stars": "4", "note": EVIL})
    for path in ("/", "/tracks", "/styles", "/experiments", "/live/overview"):
        text = c.get(path).text
        assert "<script>alert" not in text, path
    assert "&lt;script&gt;alert(1).wav" in c.get("/tracks").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in c.get("/").text  # the failure's message
    styles = c.get("/styles").text
    assert "background:#ff0088" in styles and "url(x)" not in styles  # only #rrggbb reaches a style attribute


def test_pages_show_the_world(world: World) -> None:
    c = client(world)
    overview = c.get("/").text
    assert "never started" in overview or "not running" in overview
    assert 'class="pill state-queued">queued</span> 1' in overview and "Retry" in overview
    assert overview.index("Queue") < overview.index("&lt;script&gt;alert(1).wav × &lt;script&gt;")
    tracks = c.get("/tracks").text
    assert "<video controls" in tracks and "real-time factor" in tracks and "/sheet/renders/" in tracks
    styles = c.get("/styles").text
    assert "preview.png" in styles and "curve.png" in styles and "unrated" in styles
    assert "sweep: organic.toml" in c.get("/experiments").text


def test_assign_writes_the_tracks_sidecar(world: World) -> None:
    import tomllib

    c = client(world)
    token = csrf(c)
    r = c.post("/actions/assign", data={"csrf": token, "track": str(world.track), "styles": ["neon", EVIL]})
    assert r.status_code == 303
    sidecar = world.track.with_suffix(".toml")
    assert tomllib.loads(sidecar.read_text())["styles"] == ["neon", EVIL]
    from daemon.service.planner import read_sidecar
    assert read_sidecar(sidecar) == ["neon", EVIL]  # what the service reads
    assert "sidecar: neon" in c.get("/tracks").text
    assert c.post("/actions/assign", data={"csrf": token, "track": str(world.track),
                                           "styles": ["nope"]}).status_code == 400
    outside = world.root / "elsewhere.wav"
    assert c.post("/api/assign", json={"track": str(outside), "styles": ["neon"]},
                  headers={"x-csrf-token": token}).status_code == 400
    assert not outside.with_suffix(".toml").exists()
    r = c.post("/api/assign", json={"track": str(world.track), "styles": []}, headers={"x-csrf-token": token})
    assert r.status_code == 200 and not sidecar.exists()  # back to the default styles


def test_a_rating_is_stored_beside_the_style_and_shown_everywhere(world: World) -> None:
    import subprocess
    import sys

    c = client(world)
    token = csrf(c)
    assert c.post("/actions/rate", data={"csrf": token, "name": "neon", "id": STYLE_ID, "stars": "6"}).status_code == 400
    r = c.post("/api/rate", json={"name": "neon", "id": STYLE_ID, "stars": 4, "note": "lovely"},
               headers={"x-csrf-token": token})
    assert r.status_code == 200
    rating = read_rating(world.style_folder)
    assert rating is not None and (rating.stars, rating.note) == (4, "lovely")
    # a new app (a restart) reads it from the library
    assert "★★★★☆" in client(world).get("/styles").text
    assert client(world).get("/api/styles").json()[0]["rating"]["stars"] == 4
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "--config", str(world.root / "afx.toml"), "library"],
                         capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0 and "★★★★☆ lovely" in out.stdout, out.stdout + out.stderr
    board = (world.config.path("library") / "index.html").read_text()  # rewritten by the rating
    assert "★★★★☆" in board and "lovely" in board


def test_read_only_serves_everything_and_acts_on_nothing(world: World) -> None:
    c = client(world, read_only=True)
    assert "read-only" in c.get("/").text and "Retry" not in c.get("/").text
    assert "Save styles" not in c.get("/tracks").text and "Rate</button>" not in c.get("/styles").text
    r = c.post("/api/retry", json={"key": world.failed_key}, headers={"x-csrf-token": csrf(c)})
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert job_state(world, world.failed_key) == "bad_input"


# ── the API, OpenAPI and /metrics ────────────────────────────────────────────────────────────────────────

def test_every_api_route_answers_and_is_documented(world: World) -> None:
    c = client(world)
    doc = c.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    token = csrf(c)
    bodies = {"/api/retry": {"key": world.failed_key}, "/api/assign": {"track": str(world.track), "styles": ["neon"]},
              "/api/rate": {"name": "neon", "id": STYLE_ID, "stars": 5}}
    for method, path, _, _ in API_ROUTES:
        assert method.lower() in doc["paths"][path]
        r = c.get(path) if method == "GET" else c.post(path, json=bodies[path], headers={"x-csrf-token": token})
        assert r.status_code == 200, (path, r.text)
    status = c.get("/api/status").json()
    assert [j["key"] for j in status["queue"]] == [world.failed_key, world.queued_key]  # retried: claim order
    tracks = c.get("/api/tracks").json()
    assert {t["name"] for t in tracks} == {EVIL_TRACK, "calm.wav"}


def test_metrics_for_prometheus(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    families = {f.name: f for f in text_string_to_metric_families(client(world).get("/metrics").text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("afx_jobs", (("kind", "render"), ("state", "done")))] == 1
    assert samples[("afx_jobs", (("kind", "render"), ("state", "bad_input")))] == 1
    assert samples[("afx_queue_length", ())] == 1
    assert samples[("afx_job_duration_seconds_count", (("kind", "render"),))] == 1
    assert samples[("afx_job_duration_seconds_sum", (("kind", "render"),))] == 12.5
    assert samples[("afx_render_realtime_factor_sum", ())] == 2.0
    assert samples[("afx_failures", (("error", "AudioError"), ("kind", "render")))] == 1
    assert samples[("afx_service_up", ())] == 0
    ledger = Ledger(world.root / "state" / "ledger.sqlite3", create=False)
    ledger.set_meta("service", {"pid": os.getpid(), "host": socket.gethostname(), "state": "running",
                                "started": time.time() - 60, "heartbeat": time.time(), "workers": ["cpu"]})
    ledger.close()
    text = client(world).get("/metrics").text
    assert 'afx_device_running_jobs{device="cpu"} 0.0' in text and "afx_service_up 1.0" in text
    from daemon.cli import main
    ledger = Ledger(world.root / "state" / "ledger.sqlite3", create=False)
    ledger.set_meta("service", {**ledger.get_meta("service"), "web": "http://127.0.0.1:8750/"})
    ledger.close()
    assert main(["--config", str(world.root / "afx.toml"), "status"]) == 0  # afx status names the dashboard
    assert "web:     http://127.0.0.1:8750/ (the dashboard)" in capsys.readouterr().out


# ── webhooks ─────────────────────────────────────────────────────────────────────────────────────────────

class Receiver(http.server.BaseHTTPRequestHandler):
    """Fails the first `fail` POSTs with 503, then records them."""

    fail = 0
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if Receiver.fail > 0:
            Receiver.fail -= 1
            self.send_response(503)
        else:
            Receiver.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.fail, Receiver.received = 2, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_webhooks_are_retried_with_back_off_and_never_block(receiver: str) -> None:
    with socket.socket() as closed:  # a port nobody listens on: every attempt is refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    hooks = Webhooks(WebSettings(webhooks=(receiver, dead), webhook_retries=3, webhook_backoff_s=0.1,
                                 webhook_timeout_s=2.0))
    started = time.perf_counter()
    hooks.send("job.done", {"job": {"key": "k1"}, "report": {"ok": True}})
    hooks.send("job.failed", {"job": {"key": "k2"}, "report": {"ok": False}})
    assert time.perf_counter() - started < 0.05  # queued, not sent, by the caller
    deadline = time.monotonic() + 10
    while (len(Receiver.received) < 2 or hooks.given_up < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    hooks.close()
    assert sorted(b["job"]["key"] for b in Receiver.received) == ["k1", "k2"]  # the two 503s were retried
    assert {b["event"] for b in Receiver.received} == {"job.done", "job.failed"}
    assert hooks.delivered == 2 and hooks.given_up == 2  # the dead URL: 1 + 3 retries each, then given up


# ── the web part never stops the service ─────────────────────────────────────────────────────────────────

def test_a_web_server_that_cannot_start_is_retried_and_harmless(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        access = web_access(world.config)
        access = type(access)(host="127.0.0.1", port=port, token=None)
        server = WebServer(create_app(world.config, access, read_only=True), access)
        server.start()
        deadline = time.monotonic() + 5
        while server.crashes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.crashes >= 1 and server.url is None  # the port is taken: logged, not raised
    assert server.wait_started(timeout=10) == f"http://127.0.0.1:{port}/"  # the port is free again: back
    server.stop()


@pytest.mark.slow
def test_the_service_previews_first_serves_the_dashboard_sends_webhooks_and_outlives_a_taken_port(
        tmp_path: Path, receiver: str) -> None:
    """One service run: the dashboard's port is taken when it starts, so the web part crashes and the service
    works on regardless; a new (track, style) pair gets its preview (on its own slot) before its full video;
    the dashboard comes up once the port is free; a webhook reports each finished render."""
    import urllib.request

    from tests.test_service_e2e import ServiceUnderTest

    Receiver.fail = 1
    svc = ServiceUnderTest(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "afx.toml").write_text((tmp_path / "afx.toml").read_text().replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"\nwebhooks = ["{receiver}"]\n'
                                      'webhook_backoff_s = 0.2').replace("preview_s = 0 ", "preview_s = 1.0\n"
                                                                          "preview_width = 32 "))
        svc.spec("neon", trained=True)
        svc.track("one.wav", seconds=4.0)
        try:
            svc.start()
            svc.wait(lambda: svc.events("web.crashed"), timeout=30, what="the web part's crash")
        finally:
            taken.close()
        try:
            svc.wait(lambda: svc.states() == ["done", "done"], timeout=90, what="the preview and the full render")

            def status() -> Any:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as r:
                        found = json.loads(r.read())
                except OSError:
                    return None
                return found if found["service"].get("web") else None

            found = svc.wait(status, timeout=30, what="the dashboard after the port freed")
            assert found["service"]["state"] == "running" and found["totals"]["done"] == 2
            assert found["service"]["web"] == f"http://127.0.0.1:{port}/"
            svc.wait(lambda: len(Receiver.received) == 2, timeout=15, what="the webhooks")
            assert svc.stop()[0] == 0
        finally:
            svc.cleanup()
    hooks = sorted(Receiver.received, key=lambda h: h["report"]["video"]["width"])
    assert [h["event"] for h in hooks] == ["job.done", "job.done"] and hooks[0]["job"]["style"] == "neon"
    assert [h["report"]["video"]["width"] for h in hooks] == [32, 64] and hooks[1]["report"]["ok"] is True
    jobs = {("preview" if "preview_s" in json.loads(j["settings_json"]) else "full"): j for j in svc.jobs()}
    assert jobs["preview"]["started"] <= jobs["full"]["started"]  # claimed first
    assert jobs["preview"]["started"] < jobs["full"]["updated"]  # …and ran beside it, on its own slot
    folder = tmp_path / "renders" / "one.wav"
    preview = json.loads((folder / "neon@preview.json").read_text())
    assert (folder / "neon@preview.mp4").is_file() and (folder / "neon.mp4").is_file()
    assert preview["video"]["width"] == 32 and preview["video"]["height"] == 18 and preview["video"]["frames"] == 10
    assert preview["highlight"]["duration_s"] == 1.0 and "most energetic" in preview["highlight"]["why"]
    full = json.loads((folder / "neon.json").read_text())
    assert full["video"]["width"] == 64 and "highlight" not in full
    assert {e["what"] for e in svc.events("job.start")} == {"preview one.wav × neon", "render one.wav × neon"}


# ── quick previews ───────────────────────────────────────────────────────────────────────────────────────

def test_previews_are_claimed_before_older_trainings_and_renders(tmp_path: Path) -> None:
    from daemon.service.ledger import NewJob, render_key, train_key

    ledger = Ledger(tmp_path / "ledger.sqlite3")
    full = {"width": 64, "height": 36, "fps": 10}
    preview = {**full, "width": 32, "height": 18, "preview_s": 15.0}
    jobs = [NewJob(key=render_key("a" * 64, "s1", full), kind="render", style_id="s1", style_name="x",
                   settings=full, output="o", track_sha="a" * 64, track_path="/t.wav"),
            NewJob(key=train_key("s2"), kind="train", style_id="s2", style_name="y", settings={}, output="o"),
            NewJob(key=render_key("a" * 64, "s1", preview), kind="render", style_id="s1", style_name="x",
                   settings=preview, output="o", track_sha="a" * 64, track_path="/t.wav")]
    for job in jobs:  # oldest first: the full render, a training, then the preview
        ledger.ensure_jobs([job])
    order = [ledger.claim(owner="h:1", lease_s=60, ready=lambda j: True) for _ in jobs]
    assert [j.label() if j else None for j in order] == ["preview t.wav × x", "train y", "render t.wav × x"]
    ledger.close()


def test_the_preview_lane_takes_previews_only(tmp_path: Path) -> None:
    """With the normal slot busy on a long full render, a new preview starts on its own slot at once, and
    a queued full render is never given that slot."""
    from daemon.service.executor import Slot
    from daemon.service.ledger import NewJob, render_key
    from daemon.service.service import Service

    class Busy:
        """An executor whose normal slot runs a full render: only the preview lane is idle."""

        submitted: ClassVar[list[tuple[str, str]]] = []

        def idle(self) -> list[Slot]:
            return [Slot(name="cpu#1", device="cpu")]

        def submit(self, item: Any, *, slot: Slot) -> None:
            Busy.submitted.append((item.label(), slot.name))

    service = Service(load_config(build_world(tmp_path).root / "afx.toml"))
    service.ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    service.executor = Busy()  # type: ignore[assignment]
    service.preview_lane = "cpu#1"
    service._ready = lambda job: True  # type: ignore[method-assign]
    service._work_item = lambda job: job  # type: ignore[method-assign, assignment, return-value]
    full = {"width": 64, "height": 36, "fps": 10}
    new = [NewJob(key=render_key("c" * 64, "s1", s), kind="render", style_id="s1", style_name="x", settings=s,
                  output="o", track_sha="c" * 64, track_path="/new.wav")
           for s in (full, {**full, "width": 32, "height": 18, "preview_s": 15.0})]
    with service.ledger.transaction() as conn:
        conn.execute("UPDATE jobs SET state = 'done'")  # the world's queued jobs are not this test's
    service.ledger.ensure_jobs(new[:1])
    service.dispatch()
    assert Busy.submitted == []  # a full render never takes the preview lane
    service.ledger.ensure_jobs(new[1:])
    service.dispatch()
    assert Busy.submitted == [("preview new.wav × x", "cpu#1")]
    service.ledger.close()


def test_afx_web_serves_read_only_without_a_service_and_refuses_an_open_address(world: World) -> None:
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "daemon.cli", "--config", str(world.root / "afx.toml"), "web", "--listen"]
    refused = subprocess.run([*command, "0.0.0.0:8750"], capture_output=True, text=True, timeout=60, env=env,
                             check=False)
    assert refused.returncode == 2 and "without a token" in refused.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([*command, f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/session", timeout=5) as r:
                    session = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "afx web did not start"
                time.sleep(0.2)
        assert session["read_only"] is True
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/retry", method="POST",
                                         data=json.dumps({"key": world.failed_key}).encode(),
                                         headers={"x-csrf-token": session["csrf"]})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 403
        assert job_state(world, world.failed_key) == "bad_input"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
