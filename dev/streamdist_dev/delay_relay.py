"""The delaying UDP relay of dev/streamdist_dev/impair.py, run inside the test's network
namespace: every datagram from the peer waits DELAY ms before it goes on to the target
(127.0.0.1:TARGET); the target's answers go straight back to the peer that spoke last.
Stdlib only (it runs as a script); it stops by itself after LIFETIME seconds.

    python3 delay_relay.py HOST PORT TARGET DELAY_MS
"""

from __future__ import annotations

import asyncio
import sys

LIFETIME = 600.0


class DelayRelay(asyncio.DatagramProtocol):
    """One peer's datagrams to the target, each after `delay` seconds; the target's
    answers straight back to the peer that spoke last."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.peer: tuple[str, int] | None = None
        self.outward: asyncio.DatagramTransport | None = None
        self.inward: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer = addr
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, lambda: self.outward and self.outward.sendto(data, self.target))


class _Back(asyncio.DatagramProtocol):
    def __init__(self, relay: DelayRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.relay.peer and self.relay.inward:
            self.relay.inward.sendto(data, self.relay.peer)


async def _serve(host: str, port: int, target: int, delay_ms: float, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    relay = DelayRelay(("127.0.0.1", target), delay_ms / 1000)
    inward, _ = await loop.create_datagram_endpoint(lambda: relay, local_addr=(host, port))
    outward, _ = await loop.create_datagram_endpoint(lambda: _Back(relay), local_addr=("127.0.0.1", 0))
    relay.inward, relay.outward = inward, outward  # type: ignore[assignment]
    await asyncio.sleep(lifetime)  # bounded: the test stops it long before


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), LIFETIME))
