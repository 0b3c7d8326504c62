"""The streamable-HTTP transport, locked: a bearer token on every request, loopback unless the operator says
otherwise, and the SDK's Host/Origin checks always on with the real host and port.

The token comes from TAO_BEVFUSION_HTTP_TOKEN, from --token-file, or is generated once into
`<state dir>/http.token` (0600) and printed once, when it is made. Another local user can reach a loopback
port but not the token, so every request of theirs is answered 401 and nothing runs.
"""

import hmac
import ipaddress
import os
import secrets
import stat
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.layout import secure_state_dir

TOKEN_ENV = "TAO_BEVFUSION_HTTP_TOKEN"
TOKEN_FILE = "http.token"
MIN_TOKEN = 16
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """True for 'localhost' and loopback addresses (127.0.0.0/8, ::1); names other than localhost are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _checked(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN or any(ch.isspace() or not ch.isprintable() for ch in token):
        raise InputError(
            problem(
                where,
                f"the HTTP token must be at least {MIN_TOKEN} printable characters without spaces",
                "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
                code="HTTP_TOKEN_WEAK",
            )
        )
    return token


def _read_private(path: Path, where: str) -> str:
    """A token file readable by other users is refused: they could read the token."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(
            problem(
                where,
                f"cannot open {path}: {exc.strerror}",
                "give a regular file holding only the token (chmod 600)",
            )
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > 4096:
            raise InputError(
                problem(where, f"{path} is not a small regular file", "put only the token in it")
            )
        if info.st_mode & 0o077:
            raise InputError(
                problem(
                    where,
                    f"{path} can be read by other users (mode {info.st_mode & 0o777:o})",
                    f"chmod 600 {path}",
                    code="HTTP_TOKEN_EXPOSED",
                )
            )
        return _checked(fh.read().decode(errors="replace"), where)


def _generated(home: Path) -> tuple[str, bool]:
    """(token, made now): the state dir's token, made once (0600, exclusive create)."""
    path = secure_state_dir(home) / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_private(path, str(path)), False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True


def resolve_token(home: Path, token_file: Path | None) -> tuple[str, str]:
    """(token, where it came from). Printing is the caller's: only a freshly generated one is shown."""
    if os.environ.get(TOKEN_ENV):
        return _checked(os.environ[TOKEN_ENV], TOKEN_ENV), TOKEN_ENV
    if token_file is not None:
        return _read_private(token_file, "--token-file"), str(token_file)
    token, made = _generated(home)
    return token, ("generated" if made else f"state dir ({home / TOKEN_FILE})")


def check_bind(host: str, allow_remote: bool, token_source: str) -> None:
    """Loopback only, unless --allow-remote and a token the operator chose (not a generated one)."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise InputError(
            problem(
                "--host",
                f"{host} is not a loopback address: anyone who can reach it could "
                "launch containers as this user",
                "bind 127.0.0.1, or pass --allow-remote "
                f"with {TOKEN_ENV} or --token-file (and put TLS in front)",
                code="HTTP_REMOTE",
            )
        )
    if token_source == "generated" or token_source.startswith("state dir"):
        raise InputError(
            problem(
                "--allow-remote",
                "a remote bind needs a token you chose and gave to the clients",
                f"set {TOKEN_ENV} or pass --token-file",
                code="HTTP_REMOTE",
            )
        )


def security_settings(host: str, port: int, extra_hosts: list[str]) -> Any:
    """The SDK's DNS-rebinding protection with the real host and port (never left off)."""
    from mcp.server.transport_security import TransportSecuritySettings

    names = [host if ":" not in host else f"[{host.strip('[]')}]", *extra_hosts]
    if is_loopback(host):
        names += ["127.0.0.1", "localhost", "[::1]"]
    hosts = sorted({f"{name}:{port}" for name in names})
    origins = sorted({f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")})
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class BearerAuth:
    """ASGI wrapper: every HTTP request needs `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: App, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    def allowed(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                given = value
        scheme, _, credentials = given.partition(b" ")
        ok = hmac.compare_digest(
            credentials.strip(), self.expected
        )  # constant time, whatever the scheme
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope):
            await self.app(scope, receive, send)
            return
        body = b'{"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="tao-bevfusion"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def serve_http(
    server: Any,
    home: Path,
    host: str,
    port: int,
    token_file: Path | None = None,
    allow_remote: bool = False,
    extra_hosts: list[str] | None = None,
) -> None:
    """Run `server` (an MCPServer) on streamable HTTP behind the token; refuses an unsafe bind first."""
    import anyio
    import uvicorn

    token, source = resolve_token(home, token_file)
    check_bind(host, allow_remote, source)
    if source == "generated":
        print(
            f"tao-bevfusion HTTP token (shown once; kept in {home / TOKEN_FILE}, mode 0600): {token}",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"tao-bevfusion HTTP token from {source}", file=sys.stderr, flush=True)
    app = server.streamable_http_app(
        transport_security=security_settings(host, port, extra_hosts or []), host=host
    )
    config = uvicorn.Config(
        BearerAuth(app, token), host=host, port=port, log_level="info", lifespan="on"
    )
    anyio.run(uvicorn.Server(config).serve)
