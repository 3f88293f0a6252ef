"""A model's stable address in local container mode: what a Kubernetes Service gives.

``python -m trainship.cluster.proxy --port P --target-file F`` accepts TCP connections on
127.0.0.1:P and relays each to the port written in F (the live version's container). The
podman driver rewrites F when a new version goes live, so new connections reach it while
the URL stays the same; a failed version never gets written there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

BUFFER = 1 << 16


class Target:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime = 0.0
        self.port = 0

    def current(self) -> int:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self.mtime:
                self.port, self.mtime = int(self.path.read_text().strip() or 0), mtime
        except (OSError, ValueError):
            pass
        return self.port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


_BODY = b'{"error": "Unavailable", "message": "no model version is serving"}\n'
UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: " + str(len(_BODY)).encode()
               + b"\r\n\r\n" + _BODY)


async def serve(port: int, target: Target) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = target.current()
        try:
            if not upstream:
                raise OSError("no target")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            writer.write(UNAVAILABLE)
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024,
                                        reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target-file", required=True)
    args = parser.parse_args()
    print(f"service proxy on 127.0.0.1:{args.port} -> {args.target_file}", flush=True)
    asyncio.run(serve(args.port, Target(Path(args.target_file))))


if __name__ == "__main__":
    main()
