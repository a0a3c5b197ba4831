"""The bench's load client keeps its connections alive, as its figures assume.

``UpstreamPool`` pools a connection only once the request was handed over to its last byte
(``Connection.end_request``). A client that skipped it opened a new connection for every
request, and part 2 and the scale run measured connection set-up instead of the waiting room.
"""

from __future__ import annotations

import asyncio

from bench.loadclient import LoadClient

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def _serve() -> tuple[asyncio.Server, list[int]]:
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, accepted


def test_sequential_requests_share_one_connection() -> None:
    async def main() -> tuple[list[int], list[bytes]]:
        server, accepted = await _serve()
        port = server.sockets[0].getsockname()[1]
        client = LoadClient(f"http://127.0.0.1:{port}")
        try:
            bodies = [(await client.request("GET", f"/{i}")).body for i in range(5)]
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()
        return accepted, bodies

    accepted, bodies = asyncio.run(main())
    assert bodies == [b"ok"] * 5
    assert len(accepted) == 1
