"""A model's stable address on the local stack: what a Kubernetes Service gives.

``python -m trainship.cluster.proxy --port P --target-file F --control-file C`` accepts TCP
connections on 127.0.0.1:P and relays them to the port written in F (the live version). The
local drivers replace F when a version goes live (trainship.cluster.front): every new
connection from then on reaches the new version while the URL stays the same; a failed
version never gets written there.

Weighted targets (a canary, trainship.cluster.weighted): F may name several ports with
weights. The proxy then picks a target per REQUEST, by smooth weighted round-robin shared by
all connections: at each message boundary of a connection (the h11 framing below) the next
request goes to the next pick, over a new upstream connection when the pick is another
version than the last one. Where the framing cannot follow a connection (see below) it is
picked once and stays pinned: per connection. A picked version that refuses the connection
is passed over for the other targets (each tried once); none left is a 503.

Drain (a version is retired): the driver asks on the control port (written to C)
``drain PORT SECONDS``; the answer ``drained N`` comes once no connection is relayed to PORT
any more, or after SECONDS with N the connections still open. The driver stops the retired
version only then, like Kubernetes removes a terminating pod from the Service's endpoints
and gives it terminationGracePeriodSeconds.

Keep-alive connections: the proxy follows each connection's HTTP/1.1 message framing (h11,
in both directions) without changing a byte. A connection pinned to a retired version is
let go of that version at the next message boundary, an idle one at once and a busy one
right after its response; the client's next request on the same connection is relayed to
the live version over a new upstream connection. So a keep-alive client sees neither a
reset nor a close. What h11 cannot follow (a protocol upgrade, a protocol error, a
pipelined request) stays a plain TCP relay pinned to its version until it ends, or until
the grace period ends the version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

import h11

from trainship.cluster.weighted import Picker, Targets, parse

BUFFER = 1 << 16

_BODY = b'{"error": "Unavailable", "message": "no model version is serving"}\n'
UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: " + str(len(_BODY)).encode()
               + b"\r\n\r\n" + _BODY)


class Target:
    """The live versions' ports and weights, read again whenever the target file was
    replaced (a file that does not parse leaves the targets as they were)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key: tuple[int, int, int] | None = None
        self.targets: Targets = ()

    def current(self) -> Targets:
        try:
            stat = self.path.stat()
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if key != self.key:
                self.targets, self.key = parse(self.path.read_text()), key
        except (OSError, ValueError):
            pass
        return self.targets


class Framing:
    """Where one connection is in its HTTP/1.1 exchanges: each side's bytes are parsed by an
    h11 connection of the receiving role, and every event is mirrored into the other one, so
    both follow the same request/response cycle."""

    def __init__(self) -> None:
        self.requests = h11.Connection(h11.SERVER)  # parses what the client sends
        self.responses = h11.Connection(h11.CLIENT)  # parses what the version answers
        self.followed = True  # False once h11 lost track: a plain TCP relay from then on
        self.fresh = True  # nothing of the next request has arrived since the last response

    def client_sent(self, data: bytes) -> None:
        self.fresh = False
        self._feed(self.requests, data)

    def version_sent(self, data: bytes) -> None:
        self._feed(self.responses, data)

    def at_boundary(self) -> bool:
        """Between two exchanges: the last response is complete, no new request began."""
        return (self.followed and self.fresh and self.requests.their_state is h11.IDLE
                and self.responses.their_state is h11.IDLE)

    def _feed(self, parser: h11.Connection, data: bytes) -> None:
        if not self.followed:
            return
        try:
            parser.receive_data(data)
            self._advance()
        except h11.ProtocolError:
            self.followed = False

    def _advance(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for parser, mirror in ((self.requests, self.responses),
                                   (self.responses, self.requests)):
                event = parser.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED \
                        or isinstance(event, h11.ConnectionClosed):
                    continue
                mirror.send(event)  # type: ignore[arg-type]
                progressed = True
            if self.requests.states == {h11.CLIENT: h11.DONE, h11.SERVER: h11.DONE}:
                pipelined = self.requests.next_event() is h11.PAUSED
                self.requests.start_next_cycle()
                self.responses.start_next_cycle()
                self.fresh = not pipelined
                progressed = True


class Relay:
    """One client connection, relayed to a version's port."""

    def __init__(self, front: Front, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.front, self.reader, self.writer = front, reader, writer
        self.framing = Framing()
        self.port = 0
        self.upstream: asyncio.StreamWriter | None = None
        self.unused = False  # the upstream was picked for the request still to come

    async def run(self) -> None:
        try:
            if not await self._connect(self.front.pick()):
                return
            while data := await self.reader.read(BUFFER):
                if self.upstream is None or (self.framing.at_boundary() and not self.unused):
                    # a new request: the next pick (the upstream stays when it is the same)
                    port = self.front.pick()
                    if self.upstream is None or port != self.port:
                        self.release()
                        if not await self._connect(port):
                            return
                self.unused = False
                self.framing.client_sent(data)
                assert self.upstream is not None
                self.upstream.write(data)
                await self.upstream.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.release()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _connect(self, port: int) -> bool:
        """A new upstream connection to ``port`` (picked); when it refuses, to the next pick
        among the targets not tried yet (the targets may have changed meanwhile); a 503 to
        the client when none answers."""
        tried: set[int] = set()
        while port and port not in tried:
            tried.add(port)
            self.front.attach(self, port)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.front.detach(self)
                port = self.front.pick(exclude=tried)
                continue
            self.port, self.upstream, self.unused = port, writer, True
            asyncio.get_running_loop().create_task(self._answers(reader, writer))
            return True
        self.writer.write(UNAVAILABLE)
        with contextlib.suppress(Exception):
            await self.writer.drain()
        return False

    async def _answers(self, reader: asyncio.StreamReader,
                       upstream: asyncio.StreamWriter) -> None:
        """The version's bytes to the client, until it closes or this relay lets it go."""
        try:
            while data := await reader.read(BUFFER):
                self.framing.version_sent(data)
                self.writer.write(data)
                await self.writer.drain()
                if self.upstream is upstream and self.framing.at_boundary() \
                        and not self.front.serves(self.port):
                    self.release()  # its version is retired: the next request goes live
        except (ConnectionError, OSError):
            pass
        if self.upstream is upstream:  # the version closed the connection: so does the proxy
            self.release()
            with contextlib.suppress(Exception):
                self.writer.close()

    def release(self) -> None:
        """Let go of the upstream connection (the client's stays open)."""
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            with contextlib.suppress(Exception):
                upstream.close()
        self.front.detach(self)


class Front:
    """The relays by the version port they are pinned to."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.picker = Picker()
        self.relays: dict[int, set[Relay]] = {}

    def pick(self, exclude: Iterable[int] = ()) -> int:
        """The port the next request goes to (0: none serves)."""
        return self.picker.pick(self.target.current(), exclude)

    def serves(self, port: int) -> bool:
        """Whether ``port`` is one of the targets (a weight above 0)."""
        return any(p == port for p, _ in self.target.current())

    def attach(self, relay: Relay, port: int) -> None:
        self.relays.setdefault(port, set()).add(relay)

    def detach(self, relay: Relay) -> None:
        for relays in self.relays.values():
            relays.discard(relay)

    def open_to(self, port: int) -> int:
        return len(self.relays.get(port, ()))

    async def drain(self, port: int, seconds: float) -> int:
        """Wait until no connection is relayed to ``port`` (the targets moved off it):
        idle keep-alive connections let go of it at once, busy ones after their response.
        The connections still open after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            retired = not self.serves(port)
            for relay in list(self.relays.get(port, ())):
                if retired and relay.framing.at_boundary():
                    relay.release()
            if not self.open_to(port) or loop.time() >= deadline:
                return self.open_to(port)
            await asyncio.sleep(0.02)

    async def control(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """``drain PORT SECONDS`` -> ``drained N``."""
        try:
            words = (await reader.readline()).decode().split()
            if len(words) == 3 and words[0] == "drain":
                left = await self.drain(int(words[1]), float(words[2]))
                writer.write(f"drained {left}\n".encode())
            else:
                writer.write(b"error: expected 'drain PORT SECONDS'\n")
            await writer.drain()
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def serve(port: int, target: Target, control_file: Path | None = None) -> None:
    front = Front(target)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Relay(front, reader, writer).run()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024,
                                        reuse_address=True)
    control = await asyncio.start_server(front.control, "127.0.0.1", 0)
    if control_file is not None:
        tmp = control_file.with_name(control_file.name + ".tmp")
        tmp.write_text(str(control.sockets[0].getsockname()[1]))
        os.replace(tmp, control_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server, control:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target-file", required=True)
    parser.add_argument("--control-file")
    args = parser.parse_args()
    print(f"service proxy on 127.0.0.1:{args.port} -> {args.target_file}", flush=True)
    asyncio.run(serve(args.port, Target(Path(args.target_file)),
                      Path(args.control_file) if args.control_file else None))


if __name__ == "__main__":
    main()
