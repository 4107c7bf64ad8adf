"""An opt-in lean HTTP/1.1 keep-alive transport for the openai client and a plain-http local server
(`describe --lean-http`; without it the openai client's own transport is used).

    client = openai.AsyncOpenAI(base_url="http://localhost:8000/v1",
                                http_client=httpx2.AsyncClient(transport=LeanTransport()))

Why: against a local vLLM / llama.cpp / Ollama server the request rate is bounded by the client's CPU, and
httpx's default transport (httpcore + h11 + anyio) spends more CPU per request than everything else put
together (its pool is scanned on every request and response). This transport keeps idle connections in a
stack and parses HTTP/1.1 directly on asyncio streams. Everything above it is the official client
unchanged: auth headers, base URL, status-code errors, timeouts mapped to APITimeoutError, dropped
connections to APIConnectionError. It is opt-in because it ignores proxy settings and handles only the
HTTP/1.1 a local server speaks, and its saving matters only above ~500 requests/s, far above what a
GPU-served model returns (benchmarks/describe_throughput.py measures both transports).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import httpx2

_MAX_HEAD = 64 * 1024


class LeanTransport(httpx2.AsyncBaseTransport):
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = (
            defaultdict(list)
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        total = max((t for t in (timeout.get("connect"), timeout.get("read")) if t is not None), default=None)
        body = await request.aread()
        url = request.url
        key = (url.host, url.port or 80)
        target = url.raw_path.decode("ascii")
        lines = [f"{request.method} {target} HTTP/1.1"]
        lines += [f"{k.decode('latin-1')}: {v.decode('latin-1')}" for k, v in request.headers.raw]
        if "content-length" not in request.headers:
            lines.append(f"content-length: {len(body)}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        conn = None
        try:
            async with asyncio.timeout(total):
                conn = self._checkout(key) or await asyncio.open_connection(key[0], key[1], limit=_MAX_HEAD)
                status, headers, content, keep = await self._exchange(*conn, payload)
        except BaseException as err:
            if conn is not None:
                conn[1].close()  # state unknown after a failure or a timeout: never reuse it
            if isinstance(err, TimeoutError):
                raise httpx2.ReadTimeout(f"no reply within {total} s", request=request) from None
            if isinstance(err, asyncio.IncompleteReadError | ConnectionError):
                raise httpx2.RemoteProtocolError(
                    f"server disconnected without a full reply ({err})", request=request
                ) from None
            if isinstance(err, OSError):
                raise httpx2.ConnectError(str(err), request=request) from None
            if isinstance(err, asyncio.LimitOverrunError | ValueError):  # a huge head, bad numbers in it
                raise httpx2.RemoteProtocolError(f"malformed HTTP reply ({err})", request=request) from None
            raise
        if keep:
            self._idle[key].append(conn)
        else:
            conn[1].close()
        return httpx2.Response(status, headers=headers, stream=httpx2.ByteStream(content), request=request)

    def _checkout(self, key: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """An idle connection the server has not closed meanwhile (as httpcore checks before reuse)."""
        idle = self._idle[key]
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        first, *rest = head[:-4].split(b"\r\n")
        parts = first.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise httpx2.RemoteProtocolError(f"not an HTTP/1.x status line: {first[:80]!r}")
        status = int(parts[1])
        headers = [tuple(x.strip() for x in line.split(b":", 1)) for line in rest if b":" in line]
        fields = {k.lower(): v for k, v in headers}
        keep = fields.get(b"connection", b"").lower() != b"close" and parts[0] == b"HTTP/1.1"
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers expected from chat servers
                    break
                chunks.append(await reader.readexactly(size + 2))
            content = b"".join(c[:-2] for c in chunks)
            headers = [(k, v) for k, v in headers if k.lower() != b"transfer-encoding"]
        elif b"content-length" in fields:
            content = await reader.readexactly(int(fields[b"content-length"]))
        else:
            content, keep = await reader.read(), False  # the body runs to the end of the connection
        return status, headers, content, keep

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()
