"""A remote "homeserver" that misbehaves at the HTTP level, for outage tests: a raw TLS socket server on
loopback that reads a request and then answers garbage, hangs, dribbles, floods, sends a compression
bomb or cuts the answer off, as `behaviour` says. What aiohttp would never send, it can."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import Awaitable, Callable

from tests.support.ports import free_port
from tests.support.tls_ca import TestCA

Behaviour = Callable[[asyncio.StreamWriter], Awaitable[None]]

JSON_CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def garbage(writer: asyncio.StreamWriter) -> None:
    """Bytes that are not HTTP at all."""
    writer.write(b"\x00\x01SSH-2.0-OpenSSH_9.6 this is no HTTP\r\n\r\n" * 10)


async def hang(writer: asyncio.StreamWriter) -> None:
    """Accept the request and never answer."""
    await asyncio.Event().wait()


async def dribble(writer: asyncio.StreamWriter) -> None:
    """A 200 whose JSON body arrives one byte at a time, forever."""
    writer.write(JSON_CHUNKED + _chunk(b"["))
    while True:  # until the reader hangs up (the write fails) or the server stops
        writer.write(_chunk(b" "))
        await writer.drain()
        await asyncio.sleep(0.1)


async def flood(writer: asyncio.StreamWriter) -> None:
    """A 200 whose JSON body goes on for 64 MiB (far past any limit the tests set)."""
    writer.write(JSON_CHUNKED + _chunk(b"["))
    block = _chunk(b"1," * 32768)
    for _ in range(1024):
        if writer.is_closing() or writer.transport.get_extra_info("socket") is None:
            return
        writer.write(block)
        await writer.drain()


async def gzip_bomb(writer: asyncio.StreamWriter) -> None:
    """A small gzip body that inflates to 64 MiB of JSON whitespace."""
    body = gzip.compress(b"[" + b" " * (64 * 1024 * 1024) + b"]", compresslevel=9)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                 + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


async def huge_headers(writer: asyncio.StreamWriter) -> None:
    """A header line far past any sane size."""
    writer.write(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * (1024 * 1024) + b"\r\n\r\n{}")


async def cut_off(writer: asyncio.StreamWriter) -> None:
    """An answer that promises 10000 bytes and stops after a few."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{\"a\": ")


async def not_json(writer: asyncio.StreamWriter) -> None:
    """A well-formed HTTP answer whose body is not JSON."""
    body = b"<html>Welcome to nginx!</html>"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


class MisbehavingServer:
    def __init__(self, ca: TestCA, behaviour: Behaviour, host: str = "127.0.0.2"):
        self.host = host
        self.port = free_port(host)
        self.server_name = f"{host}:{self.port}"
        self.behaviour = behaviour
        self.requests = 0
        self._cert = ca.issue(host)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._cert.certificate_path, self._cert.private_key_path)
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=context)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await self.behaviour(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
