#!/usr/bin/env python3
"""Red-team figures for two udpd builds side by side, on loopback inside a throw-away network namespace.

What it measures, for a `--before` and an `--after` binary (guard flags go to the after one only):
  1. loop        two echo servers 127.0.0.1:P and 127.0.0.2:P, one datagram forged from one to the other:
                 datagrams exchanged in 2 s; one datagram forged with the server's own address as source:
                 its rx and CPU seconds in 2 s
  2. amplify     worst (reply+28)/(request+28) per handler over request payloads 0, 1, 16, 100, 1000 bytes
                 (after at defaults, and after with --max-amplification 0)
  3. limiter     --limit 200/50 (after only): one source floods for 3 s, a quiet one sends 100/s; the flood's
                 served rate, rate_limited, the quiet source's loss
  4. rss         VmRSS before and after 150,000 datagrams from as many forged source addresses
  5. port 0      bulk capacity (`udpd load`, the after build, --gso --gro) with and without 4 forged datagrams
                 from port 0 first; medians of 3 runs and the server's gso_disabled
  6. metrics     scrape latency of the metrics endpoint with 200 idle TCP connections open
Everything runs on 127.0.0.0/8 inside `ip netns add udpd-redteam-PID` (deleted on exit); needs root:

    sudo scripts/redteam.py --before /tmp/udpd-before --after target/release/udpd
"""
import argparse, ctypes, json, os, random, re, signal, socket, statistics, struct, subprocess, sys
import tempfile, threading, time

ACTIVE = []  # every child process started, killed at the end whatever happens
PRCTL, PR_SET_PDEATHSIG = ctypes.CDLL(None).prctl, 1


def spawn(cmd, **kw):
    """A child that the kernel kills if we die first (PR_SET_PDEATHSIG), and kill_all() kills at the end."""
    proc = subprocess.Popen(cmd, preexec_fn=lambda: PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL), **kw)
    ACTIVE.append(proc)
    return proc


def kill_all():
    for proc in ACTIVE:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


class Server:
    """One `udpd serve` child: ready once its first stdout line names the address, counters from its summary."""

    def __init__(self, binary, listen, flags=(), cpu=None):
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        cmd = pin + [binary, "serve", "--listen", listen, "--workers", "1", "--no-pin", "--quiet", *flags]
        self.proc = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err, self.ready = [], [], threading.Event()
        self.readers = [threading.Thread(target=self._read, args=(f, lines), daemon=True)
                        for f, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self.readers:
            reader.start()
        if not self.ready.wait(5) or not self.out:
            self.proc.kill()
            raise RuntimeError(f"{' '.join(cmd)[:200]} did not start: {''.join(self.err)[:300]}")
        self.port = int(re.match(r"listening on \S+:(\d+) ", self.out[0]).group(1))

    def _read(self, stream, lines):
        for line in stream:
            lines.append(line)
            self.ready.set() if lines is self.out else None
        self.ready.set()  # closed: stop waiting

    def procfs(self, name):
        with open(f"/proc/{self.proc.pid}/{name}") as f:
            return f.read()

    def cpu_seconds(self):
        fields = self.procfs("stat").rsplit(")", 1)[1].split()  # utime and stime: fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self):
        return int(re.search(r"VmRSS:\s+(\d+)", self.procfs("status")).group(1))

    def stop(self):
        """SIGTERM, then the `total:` counters of the summary as a dict."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for reader in self.readers:
            reader.join(timeout=5)
        for line in self.out:
            if line.startswith("total:"):
                return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        raise RuntimeError(f"no summary from udpd (exit {self.proc.returncode}): {''.join(self.err)[:300]}")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forge(src, sport, dst, dport, payload):
    """An IPv4+UDP datagram with any source, both checksums computed."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, length, 0)
    udp_sum = checksum(s + d + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length) + udp + payload) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, length, udp_sum)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, random.randrange(65536), 0, 64,
                     socket.IPPROTO_UDP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + udp + payload


RAW = []  # the one raw socket, opened on first use (inside the namespace)


def send_raw(packet):
    if not RAW:
        RAW.append(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))
    RAW[0].sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))


def fig_loop(binary):
    a = Server(binary, "127.0.0.1:0")
    b = Server(binary, f"127.0.0.2:{a.port}")
    send_raw(forge("127.0.0.2", a.port, "127.0.0.1", a.port, b"ping"))
    time.sleep(2.0)  # the measurement window, not a synchronisation
    exchanged = a.stop()["rx"] + b.stop()["rx"]
    s = Server(binary, "127.0.0.1:0")
    cpu = s.cpu_seconds()
    send_raw(forge("127.0.0.1", s.port, "127.0.0.1", s.port, b"ping"))
    time.sleep(2.0)
    cpu = s.cpu_seconds() - cpu
    return {"exchanged": exchanged, "self_rx": s.stop()["rx"], "self_cpu": f"{cpu:.2f} s"}


HANDLERS = {"echo": "echo", "upper": "upper", "ack": "ack", "ack:TEXT(1000 B)": "ack:" + "A" * 1000,
            "discard": "discard"}


def fig_amplify(binary, flags=()):
    worst = {}
    for name, handler in HANDLERS.items():
        server = Server(binary, "127.0.0.1:0", ["--handler", handler, *flags])
        factor = 0.0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            for size in [0, 1, 16, 100, 1000]:
                sock.sendto(b"a" * size, ("127.0.0.1", server.port))
                try:
                    factor = max(factor, (len(sock.recv(65535)) + 28) / (size + 28))
                except socket.timeout:
                    pass
        server.stop()
        worst[name] = f"{factor:.2f}"
    return worst


def drain(sock):
    """The replies waiting (or arriving within the socket's timeout)."""
    replies = []
    try:
        while True:
            replies.append(sock.recv(2048))
    except (BlockingIOError, socket.timeout):
        return replies


def flood_helper(port, seconds):
    """Child mode: send as fast as one non-blocking socket allows, count sends and replies, print JSON."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    print("go", flush=True)
    sent = got = 0
    target, payload, end = ("127.0.0.1", port), b"f" * 64, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(64):
            try:
                sock.sendto(payload, target)
                sent += 1
            except BlockingIOError:
                break
        got += len(drain(sock))
    sock.settimeout(0.3)
    got += len(drain(sock))
    print(json.dumps({"sent": sent, "got": got}), flush=True)


def fig_limiter(binary, flags=()):
    server = Server(binary, "127.0.0.1:0", flags)
    flooder = spawn([sys.executable, __file__, "--flood-helper", str(server.port), "3"],
                    stdout=subprocess.PIPE, text=True)
    flooder.stdout.readline()  # "go": its socket is open
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind(("127.0.0.2", 0))
    quiet.setblocking(False)
    answered, start = set(), time.monotonic()  # sequence numbers the quiet source got back
    for seq in range(300):
        time.sleep(max(0.0, start + seq / 100 - time.monotonic()))
        quiet.sendto(b"%08d" % seq + b"q" * 56, ("127.0.0.1", server.port))
        answered.update(reply[:8] for reply in drain(quiet))
    time.sleep(0.3)
    answered.update(reply[:8] for reply in drain(quiet))
    flood = json.loads(flooder.communicate(timeout=10)[0].splitlines()[-1])
    total = server.stop()
    return {"flood_sent": flood["sent"], "flood_got": flood["got"],
            "served_pps": f"{flood['got'] / 3:.0f}", "served_tx_pps": f"{(total['tx'] - len(answered)) / 3:.0f}",
            "rate_limited": total.get("rate_limited", "n/a"), "quiet_loss": f"{100 - len(answered) / 3:.1f} %",
            "flood_overflow": total["kernel_rx_overflow"]}


def forged_sources(count, block):
    """`count` distinct (address, port) pairs in 10.0.0.0/8 or 127.0.0.0/8, the same on every run."""
    rng, seen = random.Random(1), set()
    while len(seen) < count:
        n = rng.randrange(1 << 24)
        if block == "10.0.0.0/8" or n >= 1 << 16:  # skip 127.0.x.x, where the servers live
            seen.add(f"{block.split('.')[0]}.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    return [(addr, rng.randrange(1024, 65536)) for addr in seen]


def pick_source_block(binary):
    """10.0.0.0/8 sources unless replies to them fail in the namespace (no route): then 127.0.0.0/8."""
    server = Server(binary, "127.0.0.1:0")
    for addr, port in forged_sources(20, "10.0.0.0/8"):
        send_raw(forge(addr, port, "127.0.0.1", server.port, b"x" * 16))
    time.sleep(0.3)
    total = server.stop()
    trouble = total["tx_error"] or "".join(server.err).strip()
    if trouble:
        return "127.0.0.0/8", f"replies to 10.0.0.0/8 sources fail here (tx_error={total['tx_error']} of 20)"
    return "10.0.0.0/8", ""


def fig_rss(binary, sources, flags=()):
    server = Server(binary, "127.0.0.1:0", flags)
    packets = [forge(addr, port, "127.0.0.1", server.port, b"r" * 16) for addr, port in sources]
    before = server.rss_kb()
    for i, packet in enumerate(packets):
        send_raw(packet)
        if i % 256 == 255:
            time.sleep(0.0005)  # let a one-worker server keep up
    time.sleep(0.5)
    after = server.rss_kb()
    total = server.stop()
    return {"rss_kb": f"{before} -> {after}", "rss_rx": total["rx"], "rss_overflow": total["kernel_rx_overflow"]}


def fig_port0(binary, load_bin, forged, runs=3):
    pps, gso_off = [], []
    for _ in range(runs):
        server = Server(binary, "127.0.0.1:0", cpu=0)
        if forged:
            for _ in range(4):
                send_raw(forge("127.0.0.9", 0, "127.0.0.1", server.port, b"z" * 64))
            time.sleep(0.2)  # no signal says the server handled them
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            load = spawn(["taskset", "-c", "1", load_bin, "load", f"127.0.0.1:{server.port}", "--rate", "0",
                          "--pattern", "bulk", "--flows", "4", "--gso", "--gro", "--duration", "2",
                          "--warmup", "0", "--quiet", "--json", out.name],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            err = load.communicate(timeout=30)[1]
            text = open(out.name).read()
        gso_off.append(server.stop()["gso_disabled"])
        if load.returncode or not text:
            raise RuntimeError(f"udpd load failed ({load.returncode}): {err[:300]}")
        pps.append(json.loads(text)["received_pps"])
    return f"{statistics.median(pps):,.0f} pps ({min(pps):,.0f}-{max(pps):,.0f}), gso_disabled={max(gso_off)}"


def scrape(addr, timeout=15.0):
    """One GET /metrics within `timeout` seconds: (seconds, body) or None."""
    start = time.monotonic()
    try:
        with socket.create_connection(addr, timeout=timeout) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: redteam\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                sock.settimeout(max(0.001, timeout - (time.monotonic() - start)))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return (time.monotonic() - start, body) if head.startswith(b"HTTP/1.1 200") else None


def fig_metrics(binary, scrapes=20, idle=200):
    server = Server(binary, "127.0.0.1:0", ["--metrics", "127.0.0.1:0", "--interval", "3600"])
    found = re.search(r"metrics on http://([\d.]+):(\d+)/", "".join(server.err))  # printed before `listening`
    if not found:
        server.stop()
        return {"scrapes_ok": "cannot measure: no `metrics on` line on stderr"}
    addr = found.group(1), int(found.group(2))
    first = scrape(addr)  # a fresh server, before any idle connection: is there a body yet?
    conns = [socket.socket() for _ in range(idle)]
    for conn in conns:
        conn.setblocking(False)
        conn.connect_ex(addr)
    time.sleep(1.0)  # let the handshakes finish
    results = [scrape(addr) for _ in range(scrapes)]
    for conn in conns:
        conn.close()
    server.stop()
    ok = [r[0] * 1000 for r in results if r]
    return {"scrapes_ok": f"{len(ok)}/{scrapes}",
            "scrape_ms": f"median {statistics.median(ok):.1f}, max {max(ok):.1f}" if ok else "none answered (15 s each)",
            "first_empty": "no answer" if first is None else ("yes" if not first[1].strip() else "no")}


ROWS = [  # (figure, key, label)
    ("1 loop", "exchanged", "two servers, one forged datagram: datagrams exchanged in 2 s"),
    ("1 loop", "self_rx", "own address as source: rx in 2 s"),
    ("1 loop", "self_cpu", "own address as source: server CPU in 2 s"),
    *[("2 amplification", h, f"worst factor, handler {h}") for h in HANDLERS],
    *[("2 amplification", "cap0:" + h, f"worst factor, {h}, after --max-amplification 0") for h in HANDLERS],
    ("3 limiter 200/50", "flags", "server flags"),
    ("3 limiter 200/50", "flood_sent", "flood datagrams sent in 3 s (one socket)"),
    ("3 limiter 200/50", "flood_got", "flood replies received"),
    ("3 limiter 200/50", "served_pps", "flood served: replies received / 3 s"),
    ("3 limiter 200/50", "served_tx_pps", "flood served: (server tx - quiet replies) / 3 s"),
    ("3 limiter 200/50", "rate_limited", "server rate_limited"),
    ("3 limiter 200/50", "quiet_loss", "quiet source (100/s, 300 sent) loss"),
    ("3 limiter 200/50", "flood_overflow", "server kernel_rx_overflow (dropped before the limiter)"),
    ("4 rss", "flags", "server flags"),
    ("4 rss", "rss_kb", "VmRSS KB, before -> after 150,000 sources"),
    ("4 rss", "rss_rx", "datagrams the server received"),
    ("4 rss", "rss_overflow", "kernel_rx_overflow"),
    ("5 port 0", "bulk_clean", "bulk received_pps, no forged datagrams (median, range of 3)"),
    ("5 port 0", "bulk_port0", "bulk received_pps after 4 forged from 127.0.0.9:0"),
    ("6 metrics", "scrapes_ok", "scrapes answered (200 idle TCP connections open)"),
    ("6 metrics", "scrape_ms", "scrape latency ms"),
    ("6 metrics", "first_empty", "first scrape body empty (fresh server, no idle connections)"),
]


def attempt(into, first_key, figure, *args):
    """Runs one figure; one that cannot be measured says why in its first row, and the others still run."""
    try:
        into.update(figure(*args))
    except Exception as error:
        kill_all()
        into[first_key] = f"cannot measure: {error}"[:100]


def measure(args):
    results = {"before": {}, "after": {}}
    guard = {"before": [], "after": ["--limit", "200/50"]}
    args.block, args.why = pick_source_block(args.after)
    sources = forged_sources(150_000, args.block)
    for side, binary in (("before", args.before), ("after", args.after)):
        print(f"[{time.strftime('%H:%M:%S')}] measuring {side}: {binary}", file=sys.stderr, flush=True)
        r = results[side]
        r["flags"] = " ".join(guard[side]) or "none (no limiter in this build)"
        attempt(r, "exchanged", fig_loop, binary)
        attempt(r, "echo", fig_amplify, binary)
        if side == "after":
            cap_off = lambda: {"cap0:" + k: v for k, v in fig_amplify(binary, ["--max-amplification", "0"]).items()}
            attempt(r, "cap0:echo", cap_off)
        attempt(r, "flood_sent", fig_limiter, binary, guard[side])
        attempt(r, "rss_kb", fig_rss, binary, sources, guard[side])
        attempt(r, "bulk_clean", lambda: {"bulk_clean": fig_port0(binary, args.after, False),
                                          "bulk_port0": fig_port0(binary, args.after, True)})
        attempt(r, "scrapes_ok", fig_metrics, binary)
    for key in results["after"]:
        results["before"].setdefault(key, "n/a (no such flag)")
    return results


def print_table(results, args):
    cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, timeout=5).stdout.strip()
    print(f"udpd red team  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"machine: nproc={nproc}, kernel {os.uname().release}, CPU {cpu.group(1) if cpu else '?'}")
    print(f"before: {args.before}\nafter:  {args.after}")
    print(f"figure 4 forges its sources in {args.block}{' because ' + args.why if args.why else ''}\n")
    width = max(len(label) for _, _, label in ROWS)
    cols = [max(6, *(len(str(results[s].get(k, ""))) for _, k, _ in ROWS)) for s in ("before", "after")]
    print(f"{'figure':<17} {'measure':<{width}}  {'before':<{cols[0]}}  after")
    last = None
    for figure, key, label in ROWS:
        if figure != last:
            print("-" * (17 + width + cols[0] + cols[1] + 6))
        before, after = (str(results[side].get(key, "")) for side in ("before", "after"))
        print(f"{figure if figure != last else '':<17} {label:<{width}}  {before:<{cols[0]}}  {after}")
        last = figure


def outer(args):
    """Creates the namespace, runs this script inside it, deletes it whatever happens."""
    ns = f"udpd-redteam-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True, timeout=10)
        cmd = ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inside",
               "--before", args.before, "--after", args.after]
        inner = spawn(cmd)
        return inner.wait(timeout=1500)
    finally:
        kill_all()
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10).stdout
        for pid in pids.split():  # only what was started inside our own namespace
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", ns], timeout=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="the old udpd binary")
    parser.add_argument("--after", help="the new udpd binary (also the load generator)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flood-helper", nargs=2, type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_helper:
        return flood_helper(int(args.flood_helper[0]), args.flood_helper[1])
    for path in (args.before, args.after):
        if not path or not os.access(path, os.X_OK):
            parser.error(f"give --before PATH and --after PATH, each an executable udpd (got {path})")
    args.before, args.after = os.path.abspath(args.before), os.path.abspath(args.after)
    if os.geteuid() != 0:
        parser.error("needs root (network namespace, raw sockets): run it with sudo")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if not args.inside:
            return outer(args)
        print_table(measure(args), args)
    except KeyboardInterrupt:
        return 130
    finally:
        kill_all()


if __name__ == "__main__":
    sys.exit(main())
