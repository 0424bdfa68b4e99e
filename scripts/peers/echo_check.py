#!/usr/bin/env python3
"""echo_check.py: verify that a UDP server answers correctly, or probe it.

  echo_check.py HOST PORT [--probe] [--lossy] [--expect echo|ack:TEXT] [--gso] [--flows N]
                [--count N] [--timeout S] [--sizes LIST]

--probe: send one small datagram (a valid sockperf ping) up to --tries times,
0.2 s apart; exit 0 as soon as any reply arrives (readiness probe for servers
that print nothing).
Otherwise: from --flows sockets, send --count datagrams of mixed sizes
(--sizes, default 0,1,15,16,64,1400,8000 bytes, distinct content), with --gso also as
UDP_SEGMENT trains (same size, shorter last), and check every reply:
byte-exact echo (or the fixed TEXT with ack:TEXT), per socket, none missing,
none extra. Prints one line and exits 0 on success, 1 otherwise.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time

SOL_UDP = 17
UDP_SEGMENT = 103


def probe(host, port, tries):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    # A valid sockperf ping (u64 sequence, u16 flags = client|ping, u32
    # length, all big-endian) so that sockperf server answers it too; echo
    # and ack servers answer anything.
    body = struct.pack(">QHI", 1, 3, 16) + b"ok"
    for _ in range(tries):
        try:
            s.sendto(body, (host, port))
            s.recvfrom(65536)
            return 0
        except (socket.timeout, ConnectionRefusedError, OSError):
            time.sleep(0.05)
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--tries", type=int, default=50)
    ap.add_argument("--expect", default="echo")
    ap.add_argument("--gso", action="store_true")
    ap.add_argument("--flows", type=int, default=4)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--lossy", action="store_true", help="losses allowed: only check every reply is one sent on that flow, once")
    ap.add_argument("--sizes", default="0,1,15,16,64,1400,8000", help="comma-separated payload sizes")
    a = ap.parse_args()
    if a.probe:
        return probe(a.host, a.port, a.tries)

    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    dst = (a.host, a.port)
    socks = []
    for _ in range(a.flows):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1" if fam == socket.AF_INET else "::1", 0))
        s.setblocking(False)
        socks.append(s)
    sizes = [int(x) for x in a.sizes.split(",")]
    want = {i: [] for i in range(a.flows)}
    n = 0
    for k in range(a.count):
        for i, s in enumerate(socks):
            size = sizes[(k + i) % len(sizes)]
            body = (b"%d/%d/" % (i, k) + os.urandom(size))[:size]
            s.sendto(body, dst)
            want[i].append(body)
            n += 1
        if k % 8 == 7:
            time.sleep(0.002)
    if a.gso:
        for i, s in enumerate(socks):
            for seg, cnt, tail in ((64, 10, 64), (1400, 20, 100), (16, 40, 5)):
                segs = [os.urandom(seg) for _ in range(cnt - 1)] + [os.urandom(tail)]
                s.setblocking(True)
                s.sendmsg([b"".join(segs)], [(SOL_UDP, UDP_SEGMENT, struct.pack("H", seg))], 0, dst)
                s.setblocking(False)
                want[i].extend(segs)
                n += len(segs)
    if a.expect.startswith("ack"):
        text = a.expect.split(":", 1)[1].encode() if ":" in a.expect else None
        for i in want:
            want[i] = [text] * len(want[i])
    got = {i: [] for i in range(a.flows)}
    deadline = time.time() + a.timeout
    total = 0
    while total < n and time.time() < deadline:
        r, _, _ = select.select(socks, [], [], 0.1)
        for s in r:
            i = socks.index(s)
            while True:
                try:
                    d, _ = s.recvfrom(65536)
                except BlockingIOError:
                    break
                got[i].append(d)
                total += 1
    time.sleep(0.1)  # catch extras
    for i, s in enumerate(socks):
        while True:
            try:
                got[i].append(s.recvfrom(65536)[0])
            except BlockingIOError:
                break
    bad = 0
    for i in want:
        w, g = want[i], got[i]
        if a.lossy:
            pool = list(w)
            ok = True
            for d in g:
                if d in pool:
                    pool.remove(d)
                elif w[0] is None and len(pool):
                    pool.pop()
                else:
                    ok = False
        elif w[0] is None:  # ack without known text: only count
            ok = len(g) == len(w)
        else:
            ok = g == w
        if not ok:
            bad += 1
            if bad > 5:
                continue
            missing = len(w) - len(g)
            firstdiff = next((j for j, (x, y) in enumerate(zip(w, g)) if x != y), None)
            print(f"flow {i}: sent {len(w)} got {len(g)} (missing {missing}), first mismatch at {firstdiff}", file=sys.stderr)
    recv = sum(len(g) for g in got.values())
    if bad:
        print(f"FAIL {a.host}:{a.port}: {recv}/{n} replies, {bad}/{a.flows} flows wrong")
        return 1
    if a.lossy:
        print(f"OK {a.host}:{a.port}: {recv}/{n} datagrams answered, every reply correct for its flow ({a.expect}), {n - recv} lost")
        return 0
    print(f"OK {a.host}:{a.port}: {n} datagrams in {a.flows} flows answered {'byte-exact' if a.expect == 'echo' else a.expect}{' incl. GSO trains' if a.gso else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
