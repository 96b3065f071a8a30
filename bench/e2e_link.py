"""
A simulated WAN link in user space, for kernels without netem: a TCP
forwarder on 127.0.0.1 that holds every chunk for a one-way delay and paces
each direction at a rate, in order.

    python bench/e2e_link.py LISTEN_PORT TARGET_PORT [--delay-ms 20] [--rate-mbit 50]

What it models, per connection: the TCP handshake (the client's first bytes
reach the server 3 one-way delays after its connect, as after SYN, SYN-ACK,
then data), each chunk arriving a one-way delay after it was sent, and the
link's rate in each direction (a chunk leaves once the previous one has
been serialised). What it does not: loss, slow start and window growth (a
real 50 Mbit/s link's first round trips carry less), nor one link shared
by several connections (each connection gets the whole rate).
"""

import argparse
import asyncio
import time

CHUNK = 64 * 1024


class Direction:
    """One direction of one connection: chunks delivered at their due time, in order."""

    def __init__(self, delay, rate_bps, first_due=0.0):
        self.delay = delay
        self.rate = rate_bps
        self.free_at = first_due  # when the link may deliver the next byte
        self.queue = asyncio.Queue()

    def due(self, size):
        now = time.monotonic()
        start = max(now + self.delay, self.free_at)
        self.free_at = start + size * 8 / self.rate
        return self.free_at


async def pump(reader, direction):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            await direction.queue.put((direction.due(len(data)), data))
    except (ConnectionError, OSError):
        pass
    await direction.queue.put((time.monotonic() + direction.delay, None))


async def deliver(writer, direction):
    try:
        while True:
            due, data = await direction.queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.write_eof() if writer.can_write_eof() else None
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listen_port, target_port, delay, rate_bps):
    async def handle(client_reader, client_writer):
        accepted = time.monotonic()
        print(f"connection {accepted:.3f}", flush=True)  # how many a client opens
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1",
                                                                         target_port)
        except OSError:
            client_writer.close()
            return
        up = Direction(delay, rate_bps, first_due=accepted + 3 * delay)
        down = Direction(delay, rate_bps)
        await asyncio.gather(pump(client_reader, up), deliver(server_writer, up),
                             pump(server_reader, down), deliver(client_writer, down))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=512)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen_port", type=int)
    ap.add_argument("target_port", type=int)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--rate-mbit", type=float, default=50.0)
    a = ap.parse_args()
    asyncio.run(serve(a.listen_port, a.target_port, a.delay_ms / 1000, a.rate_mbit * 1e6))


if __name__ == "__main__":
    main()
