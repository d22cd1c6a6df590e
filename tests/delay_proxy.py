"""A TCP proxy that hands on what the server sends DELAY_MS late: a slow network between
the app hosts and the database (tests/test_cluster.py), for kernels without tc netem.

    python -m tests.delay_proxy LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

Each chunk is held for the delay, not the stream: a round trip costs DELAY_MS more,
however many are under way at once, as a longer cable would.
"""

import asyncio
import contextlib
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def deliver() -> None:
        with contextlib.suppress(OSError):
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    queue.put_nowait(None)
    await delivering


async def main(listen_host: str, listen_port: str, host: str, port: str, delay_ms: str) -> None:
    delay = int(delay_ms) / 1000

    async def connected(client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, 0.0), pipe(server_reader, client_writer, delay)
        )

    server = await asyncio.start_server(connected, listen_host, int(listen_port), backlog=1024)
    print(f"delay_proxy: listening on {listen_host}:{listen_port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
