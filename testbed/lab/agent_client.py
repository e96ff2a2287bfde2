"""The host's connection to one node's agent: one ``docker exec -i`` stream per node.

Requests are typed (:mod:`testbed.protocol`); calls may come from several threads at
once (answers are matched by id); progress events of a call go to its callback.  When
the stream breaks (the node died, its agent was killed) every pending and later call
raises :class:`NodeLost`, which the scenarios turn into a verdict."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar, cast

import docker
from docker.utils.socket import SocketError, next_frame_header, read_exactly

from testbed import codec, futures, protocol
from testbed.codec import Json
from testbed.errors import Cancelled, UserError
from testbed.protocol import ErrorInfo, Goodbye, Hello, HelloReply, Request, SessionEnd

LOG = logging.getLogger(__name__)

R = TypeVar("R")
EventCallback = Callable[[Json], None]
STDOUT, STDERR = 1, 2
CANCEL_SLICE_S = 0.2  # how soon a cancelled run's pending call gives up


class AgentError(Exception):
    """The agent answered with an error (``info.kind`` says which kind)."""

    def __init__(self, node: str, info: ErrorInfo) -> None:
        super().__init__(f"{node}: {info.message}")
        self.node = node
        self.info = info

    @property
    def kind(self) -> str:
        return self.info.kind


class NodeLost(Exception):
    """The stream to the node's agent broke: the node (or its agent) is gone."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"{node}: lost the connection to the node agent ({reason})")
        self.node = node
        self.reason = reason


class _Pending:
    def __init__(self, on_event: EventCallback | None) -> None:
        self.future: Future[Json] = Future()
        self.on_event = on_event


class AgentClient:
    """A session with the agent of one node."""

    _ids = itertools.count(1)

    def __init__(
        self,
        client: docker.DockerClient,
        container_id: str,
        node: str,
        who: str = "testbed",
        cancel: threading.Event | None = None,
    ) -> None:
        self.api = client.api
        self.cancel = cancel  # once set, calls other than goodbye raise Cancelled
        self.container_id = container_id
        self.node = node
        self.who = who
        self._sock: Any = None
        self._raw: socket.socket | None = None
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._lost: str | None = None
        self._reader: threading.Thread | None = None
        self._stderr: list[str] = []
        self.hello: HelloReply | None = None

    # -- connection --------------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> HelloReply:
        exec_id = self.api.exec_create(
            self.container_id,
            ["python3", "-m", "testbed.node.attach", protocol.AGENT_SOCKET],
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
        )["Id"]
        self._sock = self.api.exec_start(exec_id, socket=True)
        self._raw = getattr(self._sock, "_sock", self._sock)
        self._reader = threading.Thread(
            target=self._read_loop, name=f"agent {self.node}", daemon=True
        )
        self._reader.start()
        reply = self.call(
            Hello(protocol.PROTOCOL_VERSION, protocol.code_digest(), self.who), timeout=timeout
        )
        if reply.protocol != protocol.PROTOCOL_VERSION or reply.code != protocol.code_digest():
            self.close(end_session=False)
            raise UserError(
                f"the node code in {self.node}'s image ({reply.code}, protocol {reply.protocol}) "
                f"differs from this testbed's ({protocol.code_digest()}, protocol "
                f"{protocol.PROTOCOL_VERSION})",
                "run `testbed images build` (then `testbed up` recreates the nodes)",
            )
        self.hello = reply
        return reply

    def _read_loop(self) -> None:
        buffer = b""
        reason = "the stream ended"
        try:
            while True:
                stream, size = next_frame_header(self._sock)
                if size < 0:
                    break
                data = read_exactly(self._sock, size) if size else b""
                if stream == STDERR:
                    for text in data.decode(errors="replace").splitlines():
                        self._stderr = (self._stderr + [text])[-20:]
                        LOG.debug("%s agent: %s", self.node, text)
                    continue
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self._dispatch(line)
        except (OSError, SocketError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
        if self._stderr:
            reason = f"{reason}: {self._stderr[-1]}"
        self._fail_all(reason)

    def _dispatch(self, line: bytes) -> None:
        message = json.loads(line)
        pending = self._pending.get(int(message.get("id") or 0))
        if pending is None:
            LOG.debug("%s: answer to an unknown request: %s", self.node, line[:200])
            return
        if "event" in message:
            if pending.on_event is not None:
                try:
                    pending.on_event(message["event"])
                except Exception:  # a callback's bug must not kill the stream
                    LOG.exception("%s: event callback failed", self.node)
            return
        with self._lock:
            self._pending.pop(int(message["id"]), None)
        if message.get("ok"):
            pending.future.set_result(message.get("result"))
        else:
            info = codec.from_json(ErrorInfo, message.get("error") or {})
            pending.future.set_exception(AgentError(self.node, info))

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._lost = reason
            pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(NodeLost(self.node, reason))

    @property
    def lost(self) -> str | None:
        return self._lost

    # -- calls -------------------------------------------------------------------------------
    def call(
        self,
        request: Request[R],
        on_event: EventCallback | None = None,
        timeout: float | None = None,
    ) -> R:
        request_id = next(self._ids)
        started = time.monotonic()
        cancel = None if isinstance(request, Goodbye) else self.cancel  # goodbye is cleanup
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{self.node}: {request.OP} not sent, the run was cancelled")
        pending = _Pending(on_event)
        with self._lock:
            if self._lost is not None:
                raise NodeLost(self.node, self._lost)
            self._pending[request_id] = pending
        line = (
            json.dumps(
                {"id": request_id, "op": request.OP, "args": codec.to_json(request)},
                separators=(",", ":"),
            )
            + "\n"
        )
        try:
            with self._send_lock:
                assert self._raw is not None, "not connected"
                self._raw.sendall(line.encode())
        except OSError as exc:
            self._fail_all(str(exc))
        try:
            result = self._answer(pending, request, started, timeout, cancel)
        except (TimeoutError, Cancelled):
            with self._lock:
                self._pending.pop(request_id, None)  # its answer, if any, is dropped
            raise
        finally:
            LOG.debug("%s: %s took %.3f s", self.node, request.OP, time.monotonic() - started)
        return cast(R, codec.from_json(request.RESULT, result))  # RESULT is R's class

    def _answer(
        self,
        pending: _Pending,
        request: Request[R],
        started: float,
        timeout: float | None,
        cancel: threading.Event | None,
    ) -> Json:
        """The request's answer; with a cancel event, waited for in slices, between which
        the event is looked at."""
        deadline = None if timeout is None else started + timeout
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if cancel is not None:
                wait = CANCEL_SLICE_S if wait is None else min(CANCEL_SLICE_S, wait)
            try:
                return futures.result(pending.future, wait)
            except FutureTimeout:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(
                        f"{self.node}: {request.OP} abandoned, the run was cancelled"
                    ) from None
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.node}: no answer to {request.OP} within {timeout:.0f} s"
                    ) from None

    def close(self, end_session: bool = True, timeout: float = 60.0) -> SessionEnd | None:
        """End the session (the agent stops what it started and was not released) and
        close the stream.  Returns what the agent stopped, or None if it is unreachable."""
        ended = None
        if end_session and self._lost is None and self._raw is not None:
            try:
                ended = self.call(Goodbye(), timeout=timeout)
            except (NodeLost, AgentError, TimeoutError) as exc:
                LOG.info("%s: goodbye failed: %s", self.node, exc)
        if self._raw is not None:
            try:
                self._raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._raw.close()
            self._raw = None
        return ended
