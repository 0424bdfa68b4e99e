#!/usr/bin/env python3
"""py_echo.py: the classic tutorial UDP echo server, one datagram at a time.

  py_echo.py PORT [HOST]     (HOST default 0.0.0.0)

recvfrom / sendto in a loop; prints "listening on HOST:PORT" (flushed).
Exits on SIGTERM/SIGINT.
"""
import signal
import socket
import sys

port = int(sys.argv[1])
host = sys.argv[2] if len(sys.argv) > 2 else "0.0.0.0"
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((host, port))
print(f"listening on {host}:{sock.getsockname()[1]}", flush=True)
try:
    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(data, addr)
except KeyboardInterrupt:
    pass
