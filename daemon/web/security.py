"""Who may use the dashboard, and which files it may hand out.

- Loopback by default. Any other listen address needs a token (`[web] token`, or `token_file`), and
  `web_access` refuses the config without one, so the service does not start.
- With a token, every request carries it: `Authorization: Bearer …`, or a cookie set by opening the
  dashboard once with `?token=…`. Without one (loopback), the Host header must name the loopback, so a
  web page elsewhere cannot reach the dashboard by DNS rebinding.
- Every action is a POST that carries the bearer token or the page's CSRF token (a per-process secret in
  every form, or the `X-CSRF-Token` header); a cross-site Origin is refused either way.
- Files come only from renders/ and library/: no absolute paths, no `..`, no hidden names (scratch files,
  the render store), and the resolved path (symlinks followed) must stay inside the folder.

Nothing here knows about pages or the ledger.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from daemon.config import ServiceConfig
from daemon.errors import ConfigError

MIN_TOKEN_CHARS = 16
TOKEN_COOKIE = "afx_token"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@dataclass(frozen=True)
class WebAccess:
    """Where the dashboard listens and the secrets that guard it."""

    host: str  # an address to bind (a name such as localhost is allowed)
    port: int  # 0: any free port (tests)
    token: str | None  # required from every request when set
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # this process's form secret

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def token_ok(self, given: str | None) -> bool:
        return self.token is None or (given is not None and hmac.compare_digest(given.encode(), self.token.encode()))

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """`127.0.0.1:8750`, `[::1]:8750`, `0.0.0.0:80` → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen = {text!r} is not HOST:PORT", key="web.listen",
                          hint='e.g. listen = "127.0.0.1:8750" (or "[::1]:8750")')
    return host.strip("[]"), int(port)


def web_access(config: ServiceConfig) -> WebAccess:
    """The dashboard's address and token, or the ConfigError that keeps a non-loopback one from starting."""
    web = config.web
    host, port = parse_listen(web.listen)
    token = web.token or None
    if web.token_file:
        path = Path(web.token_file)
        path = path if path.is_absolute() else config.base / path
        try:
            token = path.read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the token file ({e})", path=path, key="web.token_file",
                              hint="create it (e.g. `openssl rand -hex 24 > FILE`), readable by the service") from e
        if token is None:
            raise ConfigError("the token file is empty", path=path, key="web.token_file",
                              hint="put a long random secret in it (e.g. `openssl rand -hex 24`)")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"the dashboard token is {len(token)} characters; at least {MIN_TOKEN_CHARS}",
                          key="web.token", hint="use a long random secret (e.g. `openssl rand -hex 24`)")
    if token is None and not is_loopback(host):
        raise ConfigError(f"the dashboard would listen on {web.listen} without a token", key="web.listen",
                          hint="set [web] token or token_file, listen on 127.0.0.1, or set [web] enabled = false")
    return WebAccess(host=host, port=port, token=token)


def check_webhooks(config: ServiceConfig) -> None:
    """Webhook URLs are http(s) with a host: a `file:` or typo'd URL is refused at start, not at the first job."""
    for i, url in enumerate(config.web.webhooks):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook {url!r} is not an http:// or https:// URL", key=f"web.webhooks[{i}]",
                              hint='e.g. webhooks = ["http://127.0.0.1:9000/afx"]')


def host_allowed(access: WebAccess, host_header: str | None) -> bool:
    """A loopback dashboard without a token answers only to loopback names (no DNS rebinding)."""
    if access.token is not None or not access.loopback:
        return True
    if not host_header:
        return False
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host_header.startswith("["):
        name = host_header[1:].split("]", 1)[0]
    return is_loopback(name)


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """A POST from a page of another site carries its Origin: refused. No Origin (curl, old clients) passes."""
    if not origin or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1].rstrip("/") == (host_header or "")


def safe_file(root: Path, rel: str) -> Path | None:
    """`root/rel` if it is a regular file that stays inside `root` (symlinks resolved); else None."""
    if not rel or "\0" in rel or "\\" in rel:
        return None
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or any(p in ("..", ".") or p.startswith(".") for p in parts):
        return None
    try:
        base = Path(root).resolve(strict=True)
        path = (base / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path
