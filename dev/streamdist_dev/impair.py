"""An impaired link for the media tests: delay and loss between this machine and a
network namespace the test creates, with no `netem` (this kernel has none).

    root namespace                          namespace sdimp-<id> ("far end")
    output pod (wrapper, srt-live-transmit) veth 198.18.X.2
      veth 198.18.X.1 ── UDP ──▶ iptables: DROP udp to the relay's port with
                                 `-m statistic --mode random --probability LOSS`
                                 relay (DelayRelay below): every datagram toward the
                                 receiver waits DELAY ms, replies pass at once
                                 ─▶ receiver on 127.0.0.1 (inside the namespace)

* loss: the kernel (iptables' `statistic` match, random mode) drops packets that
  arrive at the relay, i.e. the data direction only (SRT's ACKs and NAKs come back
  unharmed): the sender's libsrt sees that share of its packets reported lost;
* delay: `tbf`/`htb` shape rate, they cannot hold a packet for a fixed time, so a
  small UDP relay in the namespace (delay_relay.py) holds each datagram
  of the data direction for DELAY ms: SRT's round-trip time grows by DELAY.

For an ingest (a sender inside the namespace, the router here) the relay runs on this
side (`start_relay(..., inside=False)`: lnk.near:PORT -> 127.0.0.1:TARGET) and the loss
rule sits in the namespace's OUTPUT chain (`drop(..., chain="OUTPUT")`).

The addresses are from 198.18.0.0/15 (RFC 2544, benchmarking: routed nowhere); the
root namespace gets only the one veth end, no route beyond its /30. Everything is
removed on exit. Needs root (ip, iptables).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import media

RELAY = Path(__file__).resolve().parent / "delay_relay.py"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Link:
    """A namespace at the far end of a veth, and the rules that impair it."""

    netns: str
    near: str  # this machine's address on the link
    far: str  # the namespace's address
    veth: str

    def ns(self, *argv: str) -> list[str]:
        """argv run inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def drop(self, port: int, probability: float, chain: str = "INPUT") -> None:
        """Lose that share of the UDP packets for `port` (random, kernel): arriving in the
        namespace (INPUT), or leaving it (OUTPUT: a sender inside, its data direction)."""
        _run(*self.ns("iptables", "-w", "-A", chain, "-p", "udp", "--dport", str(port), "-m", "statistic",
                      "--mode", "random", "--probability", f"{probability:.4f}", "-j", "DROP"))  # fmt: skip

    def heal(self, chain: str = "INPUT") -> None:
        """No more loss."""
        _run(*self.ns("iptables", "-w", "-F", chain))

    def dropped(self, chain: str = "INPUT") -> int:
        """Packets the loss rule has dropped so far."""
        out = subprocess.run(self.ns("iptables", "-w", "-L", chain, "-n", "-v", "-x"), check=True,
                             capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        return sum(int(line.split()[0]) for line in out.splitlines() if "DROP" in line and "statistic" in line)


@contextmanager
def link(tag: str | None = None) -> Iterator[Link]:
    """A fresh namespace linked to this one by a veth pair; gone afterwards."""
    tag = tag or f"{os.getpid() % 100000}"
    netns, veth, peer = f"sdimp-{tag}", f"sdi{tag}", f"sdp{tag}"
    octet = 4 * (os.getpid() % 60)  # one /30 of 198.18.0.0/24 per test process
    near, far = f"198.18.0.{octet + 1}", f"198.18.0.{octet + 2}"
    _run("ip", "netns", "add", netns)
    try:
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", netns)
        _run("ip", "addr", "add", f"{near}/30", "dev", veth)
        _run("ip", "link", "set", veth, "up")
        _run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{far}/30", "dev", peer)
        _run("ip", "netns", "exec", netns, "ip", "link", "set", peer, "up")
        _run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
        yield Link(netns, near, far, veth)
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


def start_relay(lnk: Link, listen_port: int, target_port: int, delay_ms: float,
                group: media.ProcessGroup, inside: bool = True) -> media.ManagedProcess:  # fmt: skip
    """The delaying relay: inside the namespace, lnk.far:listen_port -> its 127.0.0.1:target_port
    (a receiver in the namespace); with `inside` False, on this machine,
    lnk.near:listen_port -> 127.0.0.1:target_port (a sender in the namespace, a receiver
    here: an SRT ingest through the link)."""
    # -I: not the script's directory on sys.path (dev/streamdist_dev/operator.py would shadow the stdlib)
    argv = [sys.executable, "-I", str(RELAY), lnk.far if inside else lnk.near, str(listen_port), str(target_port),
            str(delay_ms)]  # fmt: skip
    return group.start(f"relay-{listen_port}", lnk.ns(*argv) if inside else argv)
