"""gRPC across flavours over loopback, for each RPC kind the module has.

A grpcio server (the generated servicer) is called by betterproto's sync (grpcio) and async
(grpclib) stubs; a betterproto async server (grpclib, the generated `...Base`) is called by the
grpcio stub. For each pairing: requests and responses arrive intact, metadata reaches the
server and comes back in the trailers, an error's status code and details reach the client,
and an expired deadline is DEADLINE_EXCEEDED on the client and seen by the server.

Services, methods and their kinds come from the descriptors; one method per kind is used.
betterproto2 0.10's sync stub takes only the request (no metadata, no timeout), so those ride
on a grpcio client interceptor around the channel it is given.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple, cast

import grpc
import grpclib.client
import grpclib.events
import grpclib.exceptions
import grpclib.server
import pytest
import report
from betterproto2_compiler.compile.naming import pythonize_class_name, pythonize_method_name
from conftest import REPO
from google.protobuf import message
from grpclib.const import Status
from strategies import canonical, message_class

from protoship import config, image, output

HOST = "127.0.0.1"
KINDS = {
    (False, False): "unary",
    (False, True): "server_streaming",
    (True, False): "client_streaming",
    (True, True): "bidi",
}
PAIRINGS = ("betterproto-sync->grpcio", "betterproto-async->grpcio", "grpcio->betterproto")
DETAILS = "probe failed: ünïcode details"
PROBE = "probe-value"
DEADLINE = 0.5
# Nothing waits longer than this; a hang is a failure, not a stuck CI job.
BOUND = 10.0
ITEMS = 2
# A server sees the call end at its deadline either by its own timer or by the client's
# cancellation at the client's (slightly earlier) deadline, whichever comes first.
SLACK = 0.2


@dataclass(frozen=True)
class Rpc:
    kind: str
    method: Any
    pb2_grpc: Any
    betterproto: Any  # the proto package's betterproto module

    @property
    def service(self) -> Any:
        return self.method.containing_service

    @property
    def py_name(self) -> str:
        return str(pythonize_method_name(self.method.name))

    def better_class(self, desc: Any) -> Any:
        package = desc.file.package
        mod = importlib.import_module(f"{_import_root()}.{package}")
        return getattr(mod, pythonize_class_name(desc.full_name[len(package) + 1 :]))

    def better_service(self, suffix: str) -> Any:
        return getattr(self.betterproto, pythonize_class_name(self.service.name) + suffix)


@cache
def _import_root() -> str:
    cfg = config.load(REPO)
    return str(next(f for f in cfg.flavours if f.import_root is not None).import_root)


@cache
def rpcs() -> dict[str, Rpc]:
    """One method per RPC kind, the first in file and declaration order."""
    cfg = config.load(REPO)
    with output.workspace(cfg) as work:
        img = image.compile_image(cfg, work)
    found: dict[str, Rpc] = {}
    for file in img.files:
        if not file.has_services:
            continue
        pb2 = importlib.import_module(file.python_module)
        pb2_grpc = importlib.import_module(file.python_module + "_grpc")
        better = importlib.import_module(f"{_import_root()}.{file.package}")
        for service in pb2.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                kind = KINDS[(method.client_streaming, method.server_streaming)]
                found.setdefault(kind, Rpc(kind, method, pb2_grpc, better))
    return found


def sample(desc: Any, depth: int = 2) -> message.Message:
    """A deterministic, non-empty value of any message type: every scalar field set, the first
    member of each oneof, sub-messages to `depth`. Values stay within what both flavours carry
    (whole microseconds, positive durations: see test_roundtrip's gaps)."""
    msg = message_class(desc)()
    for f in desc.fields:
        if f.containing_oneof is not None and f is not f.containing_oneof.fields[0]:
            continue
        if f.is_repeated:
            continue
        if f.message_type is not None:
            if depth > 0:
                sub = getattr(msg, f.name)
                sub.SetInParent()
                sub.CopyFrom(sample(f.message_type, depth - 1))
        elif f.type == f.TYPE_ENUM:
            setattr(msg, f.name, f.enum_type.values[-1].number)
        elif f.type == f.TYPE_STRING:
            setattr(msg, f.name, "héllo")
        elif f.type == f.TYPE_BYTES:
            setattr(msg, f.name, b"\x00\xff")
        elif f.type == f.TYPE_BOOL:
            setattr(msg, f.name, True)
        elif f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
            setattr(msg, f.name, 1.5)
        else:
            setattr(msg, f.name, 7000)
    return cast(message.Message, msg)


# -- what the servers saw --------------------------------------------------------------------


@dataclass
class Seen:
    """Set by the test before a call (mode), filled in by the server during it."""

    mode: str = "ok"
    requests: list[bytes] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    deadline_expired: threading.Event = field(default_factory=threading.Event)
    grpclib_deadline: Any = None

    def reset(self, mode: str) -> None:
        self.mode = mode
        self.requests.clear()
        self.metadata.clear()
        self.deadline_expired.clear()


def _responses(rpc: Rpc) -> list[message.Message]:
    return [sample(rpc.method.output_type)] * (ITEMS if rpc.method.server_streaming else 1)


def _requests(rpc: Rpc) -> list[message.Message]:
    return [sample(rpc.method.input_type)] * (ITEMS if rpc.method.client_streaming else 1)


# -- grpcio server ----------------------------------------------------------------------------


def _grpcio_handler(rpc: Rpc, seen: Seen) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        requests = list(request) if rpc.method.client_streaming else [request]
        seen.requests.extend(r.SerializeToString(deterministic=True) for r in requests)
        seen.metadata.update((k, str(v)) for k, v in context.invocation_metadata())
        if seen.mode == "fail":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, DETAILS)
        if seen.mode == "slow":
            end = time.monotonic() + BOUND
            while context.is_active() and time.monotonic() < end:
                time.sleep(0.02)
            remaining = context.time_remaining()
            if not context.is_active() and remaining is not None and remaining < SLACK:
                seen.deadline_expired.set()
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "too slow")
        context.set_trailing_metadata((("x-echo", seen.metadata.get("x-probe", "")),))
        responses = _responses(rpc)
        return iter(responses) if rpc.method.server_streaming else responses[0]

    return handle


@pytest.fixture(scope="module")
def grpcio_server() -> Iterator[tuple[int, Seen]]:
    seen = Seen()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    by_service: dict[str, list[Rpc]] = {}
    for rpc in rpcs().values():
        by_service.setdefault(rpc.service.full_name, []).append(rpc)
    for group in by_service.values():
        first = group[0]
        servicer_cls = getattr(first.pb2_grpc, f"{first.service.name}Servicer")
        handlers = {r.method.name: _method(_grpcio_handler(r, seen)) for r in group}
        servicer = type("Servicer", (servicer_cls,), handlers)()
        getattr(first.pb2_grpc, f"add_{first.service.name}Servicer_to_server")(servicer, server)
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    yield port, seen
    server.stop(grace=None).wait(BOUND)


def _method(fn: Callable[..., Any]) -> Callable[..., Any]:
    return lambda self, request, context: fn(request, context)


# -- betterproto (grpclib) server ---------------------------------------------------------------


def _better_handler(rpc: Rpc, seen: Seen) -> Callable[..., Any]:
    async def receive(arg: Any) -> None:
        items = [m async for m in arg] if rpc.method.client_streaming else [arg]
        seen.requests.extend(canonical(_to_grpcio(m, rpc.method.input_type)) for m in items)
        if seen.mode == "fail":
            raise grpclib.exceptions.GRPCError(Status.FAILED_PRECONDITION, DETAILS)
        if seen.mode == "slow":
            try:
                await asyncio.sleep(BOUND)
            finally:
                deadline = seen.grpclib_deadline
                if deadline is not None and deadline.time_remaining() < SLACK:
                    seen.deadline_expired.set()

    def responses() -> list[Any]:
        cls = rpc.better_class(rpc.method.output_type)
        return [cls.parse(r.SerializeToString()) for r in _responses(rpc)]

    if rpc.method.server_streaming:

        async def stream(self: Any, arg: Any) -> AsyncIterator[Any]:
            await receive(arg)
            for r in responses():
                yield r

        return stream

    async def unary(self: Any, arg: Any) -> Any:
        await receive(arg)
        return responses()[0]

    return unary


class _Loop:
    """An event loop in a thread, for a grpclib server called by blocking grpcio clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(BOUND)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(BOUND)
        self.loop.close()


@pytest.fixture(scope="module")
def betterproto_server() -> Iterator[tuple[int, Seen]]:
    seen = Seen()
    by_service: dict[str, list[Rpc]] = {}
    for rpc in rpcs().values():
        by_service.setdefault(rpc.service.full_name, []).append(rpc)
    handlers = []
    for group in by_service.values():
        base = group[0].better_service("Base")
        methods = {r.py_name: _better_handler(r, seen) for r in group}
        handlers.append(type("Impl", (base,), methods)())
    loop = _Loop()

    async def on_request(event: grpclib.events.RecvRequest) -> None:
        seen.grpclib_deadline = event.deadline
        seen.metadata.update((k, str(v)) for k, v in event.metadata.items())

    async def on_trailers(event: grpclib.events.SendTrailingMetadata) -> None:
        if event.status is Status.DEADLINE_EXCEEDED:
            seen.deadline_expired.set()
        event.metadata["x-echo"] = seen.metadata.get("x-probe", "")

    transports: list[asyncio.BaseTransport] = []

    async def start() -> tuple[grpclib.server.Server, int]:
        server = grpclib.server.Server(handlers)
        # Before Python 3.12, asyncio.Server.wait_closed() leaves accepted connections open;
        # their sockets are then reported unclosed (ResourceWarning) in some later test.
        # Keep the transports so stop() can close them.
        make_protocol = server._protocol_factory

        def tracking_factory() -> Any:
            protocol = make_protocol()
            made = protocol.connection_made

            def connection_made(transport: asyncio.BaseTransport) -> None:
                transports.append(transport)
                made(transport)

            protocol.connection_made = connection_made  # type: ignore[method-assign]
            return protocol

        server._protocol_factory = tracking_factory  # type: ignore[method-assign]
        grpclib.events.listen(server, grpclib.events.RecvRequest, on_request)
        grpclib.events.listen(server, grpclib.events.SendTrailingMetadata, on_trailers)
        await server.start(HOST, 0)
        # grpclib has no public accessor for the port it bound.
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return server, port

    server, port = loop.run(start())
    yield port, seen

    async def stop() -> None:
        server.close()
        await server.wait_closed()
        for transport in transports:
            transport.close()
        await asyncio.sleep(0)

    loop.run(stop())
    loop.close()


def _to_grpcio(better: Any, desc: Any) -> message.Message:
    return cast(message.Message, message_class(desc).FromString(bytes(better)))


# -- clients ------------------------------------------------------------------------------------


class Outcome(NamedTuple):
    responses: list[bytes]
    code: str  # grpc status name, "OK" on success
    details: str
    trailers: dict[str, str] | None  # None: this client API does not expose trailers


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _Inject(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds metadata and a timeout to calls made through a stub that takes neither."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], timeout: float) -> None:
        self.metadata = metadata
        self.timeout = timeout

    def _details(self, d: Any) -> Any:
        return _Details(
            d.method, self.timeout, self.metadata, d.credentials, d.wait_for_ready, d.compression
        )

    def intercept_unary_unary(self, cont: Any, details: Any, request: Any) -> Any:
        return cont(self._details(details), request)

    def intercept_unary_stream(self, cont: Any, details: Any, request: Any) -> Any:
        return cont(self._details(details), request)

    def intercept_stream_unary(self, cont: Any, details: Any, requests: Any) -> Any:
        return cont(self._details(details), requests)

    def intercept_stream_stream(self, cont: Any, details: Any, requests: Any) -> Any:
        return cont(self._details(details), requests)


def call_betterproto_sync(rpc: Rpc, port: int, timeout: float) -> Outcome:
    cls = rpc.better_class(rpc.method.input_type)
    requests = [cls.parse(r.SerializeToString()) for r in _requests(rpc)]
    out = rpc.method.output_type
    with grpc.insecure_channel(f"{HOST}:{port}") as raw:
        channel = grpc.intercept_channel(raw, _Inject((("x-probe", PROBE),), timeout))
        stub = rpc.better_service("Stub")(channel)
        method = getattr(stub, rpc.py_name)
        arg = requests if rpc.method.client_streaming else requests[0]
        try:
            result = method(arg)
            got = list(result) if rpc.method.server_streaming else [result]
        except grpc.RpcError as err:
            assert isinstance(err, grpc.Call)
            return Outcome([], err.code().name, err.details() or "", None)
    return Outcome([canonical(_to_grpcio(r, out)) for r in got], "OK", "", None)


def call_betterproto_async(rpc: Rpc, port: int, timeout: float) -> Outcome:
    cls = rpc.better_class(rpc.method.input_type)
    requests = [cls.parse(r.SerializeToString()) for r in _requests(rpc)]
    out = rpc.method.output_type

    async def run() -> Outcome:
        channel = grpclib.client.Channel(HOST, port)
        try:
            method = getattr(rpc.better_service("AsyncStub")(channel), rpc.py_name)
            arg = requests if rpc.method.client_streaming else requests[0]
            kwargs = {"timeout": timeout, "metadata": {"x-probe": PROBE}}
            try:
                if rpc.method.server_streaming:
                    got = [r async for r in method(arg, **kwargs)]
                else:
                    got = [await method(arg, **kwargs)]
            except grpclib.exceptions.GRPCError as err:
                return Outcome([], err.status.name, err.message or "", None)
            except asyncio.TimeoutError:
                # grpclib's client reports its own deadline as asyncio.TimeoutError, not as a
                # GRPCError (grpclib docs, "Deadlines"); the server still sent the status.
                return Outcome([], "DEADLINE_EXCEEDED", "", None)
            return Outcome([canonical(_to_grpcio(r, out)) for r in got], "OK", "", None)
        finally:
            channel.close()

    return asyncio.run(asyncio.wait_for(run(), BOUND))


def call_grpcio(rpc: Rpc, port: int, timeout: float) -> Outcome:
    requests = _requests(rpc)
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        stub = getattr(rpc.pb2_grpc, f"{rpc.service.name}Stub")(channel)
        method = getattr(stub, rpc.method.name)
        arg: Any = iter(requests) if rpc.method.client_streaming else requests[0]
        kwargs = {"timeout": timeout, "metadata": (("x-probe", PROBE),)}
        try:
            if rpc.method.server_streaming:
                call = method(arg, **kwargs)
                got = list(call)
            else:
                response, call = method.with_call(arg, **kwargs)
                got = [response]
        except grpc.RpcError as err:
            assert isinstance(err, grpc.Call)
            return Outcome([], err.code().name, err.details() or "", None)
        trailers = {k: str(v) for k, v in call.trailing_metadata() or ()}
    return Outcome([canonical(r) for r in got], "OK", "", trailers)


CLIENTS = {
    "betterproto-sync->grpcio": (call_betterproto_sync, "grpcio_server"),
    "betterproto-async->grpcio": (call_betterproto_async, "grpcio_server"),
    "grpcio->betterproto": (call_grpcio, "betterproto_server"),
}


# -- tests -------------------------------------------------------------------------------------


def test_module_has_rpcs(request: pytest.FixtureRequest) -> None:
    for kind in KINDS.values():
        if kind not in rpcs():
            report.record(request.config, report.RPC_KINDS_MISSING, kind)
    assert rpcs(), "the module has no RPC methods: nothing to exercise"


def _cases() -> list[Any]:
    return [
        pytest.param(kind, pairing, id=f"{kind}-{pairing}")
        for kind in rpcs()
        for pairing in PAIRINGS
    ]


def _call(
    request: pytest.FixtureRequest, kind: str, pairing: str, mode: str, timeout: float = BOUND
) -> tuple[Outcome, Seen, Rpc]:
    rpc = rpcs()[kind]
    client, server_fixture = CLIENTS[pairing]
    port, seen = request.getfixturevalue(server_fixture)
    seen.reset(mode)
    return client(rpc, port, timeout), seen, rpc


@pytest.mark.parametrize(("kind", "pairing"), _cases())
def test_messages_and_metadata_cross(
    kind: str, pairing: str, request: pytest.FixtureRequest
) -> None:
    outcome, seen, rpc = _call(request, kind, pairing, "ok")
    assert outcome.code == "OK", outcome
    assert seen.requests == [canonical(r) for r in _requests(rpc)]
    assert outcome.responses == [canonical(r) for r in _responses(rpc)]
    assert seen.metadata.get("x-probe") == PROBE
    if outcome.trailers is not None:
        assert outcome.trailers.get("x-echo") == PROBE
    report.record(request.config, report.RPC_KINDS, kind)


@pytest.mark.parametrize(("kind", "pairing"), _cases())
def test_status_and_details_cross(kind: str, pairing: str, request: pytest.FixtureRequest) -> None:
    outcome, _, _ = _call(request, kind, pairing, "fail")
    assert (outcome.code, outcome.details) == ("FAILED_PRECONDITION", DETAILS)


@pytest.mark.parametrize(("kind", "pairing"), _cases())
def test_expired_deadline_cross(kind: str, pairing: str, request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    outcome, seen, _ = _call(request, kind, pairing, "slow", timeout=DEADLINE)
    assert outcome.code == "DEADLINE_EXCEEDED", outcome
    assert time.monotonic() - started < BOUND / 2
    assert seen.deadline_expired.wait(BOUND), "the server never saw its deadline expire"
