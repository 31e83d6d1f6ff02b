"""What the service checks before a request reaches its endpoint, and the pool that parses uploads.

- :class:`RequestGuard` is an ASGI middleware. It refuses a request whose body is larger than its route allows
  while the body streams in (a declared ``Content-Length`` is refused before a byte is read; a chunked body is
  cut off as soon as the count passes the limit), so nothing larger is spooled to disk or held in memory. It also
  checks the bearer token of write routes from the headers alone, before any of the body is read.
- :func:`token_setting` and :func:`auth_problem`: an empty token means writes are off; a token must be visible
  ASCII (what an ``Authorization`` header can carry unchanged); the header's credentials are compared with the
  token byte for byte (constant time, nothing stripped).
- :class:`WorkerPool` runs upload parsing and encoding off the event loop, at most ``workers`` at a time and at
  most ``queue`` accepted (running or waiting); past that the service answers 503 at once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rsir.errors import RsirError

T = TypeVar("T")


def token_setting(token: str | None) -> str | None:
    """The write token as configured: None (writes off) for a missing or empty token; an RsirError for one that
    an HTTP header cannot carry exactly (spaces, control or non-ASCII characters)."""
    if token is None or token == "":
        return None
    bad = [c for c in token if not 0x21 <= ord(c) <= 0x7E]
    if bad:
        raise RsirError(f"the write token holds {len(bad)} character(s) that are not visible ASCII (first: "
                        f"{bad[0]!r}); use letters, digits and punctuation, e.g. the output of "
                        "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def auth_problem(authorization: list[bytes], token: str | None) -> tuple[int, str] | None:
    """(status, message) when the ``Authorization`` header values do not grant writes, else None."""
    if token is None:
        return 403, "adding items is disabled: start the server with --token to allow it"
    if len(authorization) != 1 or authorization[0][:7].lower() != b"bearer ":
        return 401, "this endpoint needs 'Authorization: Bearer <token>'"
    if not secrets.compare_digest(authorization[0][7:], token.encode("ascii")):
        return 403, "wrong token"
    return None


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted (``root_path`` removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):]
    return path


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the route's limit (answered 413)."""

    def __init__(self, limit: int) -> None:
        # Connection: close, so that the server does not read (and discard) the rest of the body
        super().__init__(413, f"request body is larger than the limit of {limit} bytes for this endpoint",
                         headers={"Connection": "close"})


@dataclass
class GuardRules:
    """Body limits per (method, route path), the default for every other route, and the write routes."""

    default_limit: int
    limits: dict[tuple[str, str], int] = field(default_factory=dict)
    writes: set[tuple[str, str]] = field(default_factory=set)
    token: str | None = None
    # path prefixes of apps mounted inside this one: their own guard applies there
    delegated: list[str] = field(default_factory=list)


class RequestGuard:
    """ASGI middleware: token of write routes checked from the headers, body size limited while it streams."""

    def __init__(self, app: ASGIApp, rules: GuardRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        r = self.rules
        path = route_path(scope)
        if any(path == d or path.startswith(d + "/") for d in r.delegated):
            await self.app(scope, receive, send)
            return
        key = (scope["method"], path)
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        if key in r.writes:
            problem = auth_problem([v for k, v in headers if k == b"authorization"], r.token)
            if problem is not None:
                extra = [(b"www-authenticate", b"Bearer")] if problem[0] == 401 else []
                await _answer(send, problem[0], problem[1], extra)
                return
        limit = r.limits.get(key, r.default_limit)
        declared = [v for k, v in headers if k == b"content-length"]
        if declared:
            if len(declared) != 1 or not declared[0].isdigit():
                await _answer(send, 400, "malformed Content-Length header")
                return
            if int(declared[0]) > limit:
                await _answer(send, 413, f"request body of {int(declared[0])} bytes is larger than the limit of "
                                         f"{limit} bytes for this endpoint")
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as e:  # reached here only if nothing inside turned it into a response
            if started:
                raise
            await _answer(send, 413, str(e.detail))


async def _answer(send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WorkerPool:
    """Runs blocking work (parsing, encoding) in ``workers`` threads, with at most ``queue`` jobs accepted."""

    def __init__(self, workers: int, queue: int) -> None:
        if workers < 1 or queue < workers:
            raise RsirError(f"worker pool: need workers >= 1 and queue >= workers (got {workers}, {queue})")
        self.workers = workers
        self.queue = queue
        self._slots = threading.BoundedSemaphore(queue)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="rsir-upload")
            return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; 503 at once when ``queue`` jobs are already accepted. A job's slot
        is freed when its thread finishes, even if the client has gone away meanwhile."""
        if not self._slots.acquire(blocking=False):
            raise HTTPException(503, f"the server is busy with {self.queue} uploads; retry in a moment",
                                headers={"Retry-After": "1"})
        try:
            fut = self._pool().submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _f: self._slots.release())
        return await asyncio.wrap_future(fut)
