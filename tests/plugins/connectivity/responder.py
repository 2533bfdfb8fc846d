"""A userspace test host for the measured probe tests, run inside a network namespace with
`ip netns exec`. This kernel has no netem, so delay and loss come from here:

    python responder.py icmp --delay 0.05 --drop 0.1 --seed 7
        answers ICMP echo requests to the namespace's own address from a raw socket (the
        kernel's own replies are switched off with net.ipv4.icmp_echo_ignore_all=1).
    python responder.py tcp --iface IF --address A --port P --delay 0.05 --drop 0.1 --seed 7
        answers TCP SYNs to A:P with a SYN-ACK. A kernel listener cannot be used: the kernel
        completes the handshake before accept(), so delaying accept() does not change the
        connect time the client measures. A is therefore NOT configured in the namespace: the
        test gives the client a static neighbour entry sending A's frames to this namespace's
        interface, whose kernel drops them silently (forwarding is off; no RST), and this
        process reads them from a packet socket and writes the SYN-ACK itself, `delay` late.

Each request is dropped with probability `drop` from a seeded generator (one draw per
request, nothing else draws from it), so a run is
repeatable. Prints "ready" once its socket is open."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import socket
import struct
import sys

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp(args: argparse.Namespace, rng: random.Random, loop: asyncio.AbstractEventLoop) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)

    def reply(packet: bytes, source: str) -> None:
        header = (packet[0] & 0x0F) * 4
        message = packet[header:]
        if len(message) < 8 or message[0] != 8:  # echo requests only
            return
        if rng.random() < args.drop:
            return
        body = b"\0\0\0\0" + message[4:]  # type 0 (echo reply), same id, sequence and data
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        loop.call_later(args.delay, sock.sendto, body, (source, 0))

    def readable() -> None:
        while True:
            try:
                packet, (source, _port) = sock.recvfrom(65535)
            except BlockingIOError:
                return
            reply(packet, source)

    loop.add_reader(sock, readable)


def tcp(args: argparse.Namespace, rng: random.Random, loop: asyncio.AbstractEventLoop) -> None:
    target = ipaddress.IPv4Address(args.address).packed
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((args.iface, ETH_P_IP))
    sock.setblocking(False)

    def syn_ack(packet: bytes) -> bytes | None:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != socket.IPPROTO_TCP or packet[16:20] != target:
            return None
        src, dst = packet[12:16], packet[16:20]
        sport, dport, seq = struct.unpack("!HHI", packet[ihl : ihl + 8])
        flags = packet[ihl + 13]
        if dport != args.port or flags & 0x12 != 0x02:  # a SYN without ACK to our port
            return None
        tcp_header = struct.pack(
            "!HHIIBBHHH",
            dport,
            sport,
            random.getrandbits(32),
            (seq + 1) & 0xFFFFFFFF,
            5 << 4,
            0x12,
            65535,
            0,
            0,
        )
        pseudo = dst + src + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp_header))
        tcp_header = tcp_header[:16] + struct.pack("!H", checksum(pseudo + tcp_header)) + b"\0\0"
        ip_header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp_header),
            0,
            0x4000,
            64,
            socket.IPPROTO_TCP,
            0,
            dst,
            src,
        )
        ip_header = ip_header[:10] + struct.pack("!H", checksum(ip_header)) + ip_header[12:]
        return ip_header + tcp_header

    def readable() -> None:
        while True:
            try:
                packet, address = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:
                continue
            answer = syn_ack(packet)
            if answer is None or rng.random() < args.drop:
                continue
            destination = (args.iface, ETH_P_IP, 0, 0, address[4])  # back to the sender's MAC
            loop.call_later(args.delay, sock.sendto, answer, destination)

    loop.add_reader(sock, readable)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["icmp", "tcp"])
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--drop", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--iface")
    parser.add_argument("--address")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    (icmp if args.kind == "icmp" else tcp)(args, random.Random(args.seed), loop)
    print("ready", flush=True)
    # Ends when the test closes our stdin (or kills us).
    loop.add_reader(sys.stdin, lambda: os.read(sys.stdin.fileno(), 4096) or loop.stop())
    loop.run_forever()


if __name__ == "__main__":
    main()
