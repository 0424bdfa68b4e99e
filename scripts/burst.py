#!/usr/bin/env python3
"""Many clients at once: CLIENTS sockets each send DATAGRAMS small datagrams at the same moment to
`udpd serve --workers W` (default buffers unless --rcvbuf), REPEATS times; prints the replies lost
per burst and the daemon's own kernel_rx_overflow (what the socket buffer could not hold).

    scripts/burst.py --udpd target/release/udpd --clients 300 --datagrams 3 --size 8 --repeats 10

Loopback only (127.0.0.1). Every wait is bounded; the daemon is stopped with SIGTERM at the end.
"""

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import time


def start_daemon(udpd, workers, rcvbuf, listen):
    args = [udpd, "serve", "--listen", listen, "--workers", str(workers), "--no-pin", "--quiet"]
    if rcvbuf:
        args += ["--rcvbuf", str(rcvbuf)]
    daemon = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ready, _, _ = select.select([daemon.stdout], [], [], 0.5)
        if ready:
            line = daemon.stdout.readline()
            if line.startswith("listening on "):
                port = int(line.split()[2].rsplit(":", 1)[1])
                return daemon, ("127.0.0.1", port)
    daemon.kill()
    sys.exit("udpd did not print its listening line within 10 s")


def burst(server, clients, datagrams, size):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(clients)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    payload = b"x" * size
    # All datagrams leave back to back: the same moment, as far as one process can make it.
    for _ in range(datagrams):
        for s in socks:
            s.sendto(payload, server)
    received = 0
    deadline = time.monotonic() + 2.0
    pending = set(socks)
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.2)
        for s in ready:
            try:
                while True:
                    s.recv(64)
                    received += 1
            except BlockingIOError:
                pass
        if received >= clients * datagrams:
            break
    for s in socks:
        s.close()
    return received


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--udpd", default="target/release/udpd")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--datagrams", type=int, default=3)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rcvbuf", type=int, default=0, help="pass --rcvbuf BYTES (0: udpd's default)")
    parser.add_argument("--listen", default="0.0.0.0:0",
                        help="udpd's --listen (port 0; the bursts go to 127.0.0.1 at the bound port)")
    opts = parser.parse_args()
    daemon, server = start_daemon(opts.udpd, opts.workers, opts.rcvbuf, opts.listen)
    sent = opts.clients * opts.datagrams
    losses = []
    try:
        for _ in range(opts.repeats):
            losses.append(sent - burst(server, opts.clients, opts.datagrams, opts.size))
            time.sleep(0.2)  # let the daemon go idle between bursts (not a synchronisation)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=10)
    overflow = next((int(t.split("=")[1]) for line in out.splitlines() if line.startswith("total:")
                     for t in line.split() if t.startswith("kernel_rx_overflow=")), None)
    rmem_max = open("/proc/sys/net/core/rmem_max").read().strip()
    who = "root" if os.geteuid() == 0 else "unprivileged"
    print(f"burst.py: {opts.clients} clients x {opts.datagrams} datagrams of {opts.size} B to "
          f"udpd --listen {opts.listen} --workers {opts.workers} ({'--rcvbuf %d' % opts.rcvbuf if opts.rcvbuf else 'default buffer'}), "
          f"{who}, net.core.rmem_max={rmem_max}")
    print(f"lost per burst of {sent}: {losses}  (total {sum(losses)} of {sent * opts.repeats})")
    print(f"daemon kernel_rx_overflow: {overflow}")
    notices = [l for l in err.splitlines() if "receive buffer" in l]
    for line in notices:
        print(f"daemon said: {line}")


if __name__ == "__main__":
    main()
