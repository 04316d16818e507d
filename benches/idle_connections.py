#!/usr/bin/env python3
"""Memory of a separate `vphone sandbox` process holding N idle connections (loopback only).

    ulimit -n 20000
    python3 benches/idle_connections.py target/release/vphone [N=10000] [MODE=keepalive|silent] \
        [--after=SECONDS] [--config=sandbox.toml]

Starts the sandbox on 127.0.0.1 (a free port), reads its VmRSS, opens N connections, and
either sends one `GET /sandbox/health` on each and reads the answer (`keepalive`: N idle
keep-alive connections) or sends nothing (`silent`). Reads VmRSS again once the sandbox has
accepted them, then (with `--after SECONDS`) once more after waiting, to see what timeouts
gave back. Every step is bounded; the sandbox is stopped at the end.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def established_to(port):
    """Server-side established sockets on the port, from /proc/net/tcp (hex port, state 01)."""
    hexport = f"{port:04X}"
    n = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(":" + hexport) and fields[3] == "01":
                n += 1
    return n


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    after = 0
    config = []
    for a in sys.argv[1:]:
        if a.startswith("--after="):
            after = int(a.split("=", 1)[1])
        if a.startswith("--config="):
            config = ["--config", a.split("=", 1)[1]]
    binary = args[0]
    n = int(args[1]) if len(args) > 1 else 10000
    mode = args[2] if len(args) > 2 else "keepalive"
    port = free_port()
    server = subprocess.Popen(
        [binary, "sandbox", "--listen", f"127.0.0.1:{port}"] + config,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/sandbox/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)
        before = rss_kib(server.pid)
        socks = []
        started = time.time()
        request = b"GET /sandbox/health HTTP/1.1\r\nHost: sandbox\r\n\r\n"
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if mode == "keepalive":
                s.sendall(request)
                got = b""
                while b'"status":"ok"' not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("closed before answering")
                    got += chunk
            socks.append(s)
        opened = time.time() - started
        # Bounded wait until the sandbox holds them all.
        for _ in range(20):
            if established_to(port) >= n:
                break
            time.sleep(0.2)
        time.sleep(1.0)
        held = rss_kib(server.pid)
        result = {
            "binary": binary,
            "mode": mode,
            "connections": n,
            "established": established_to(port),
            "rss_before_kib": before,
            "rss_with_connections_kib": held,
            "per_connection_bytes": round((held - before) * 1024 / n),
            "open_seconds": round(opened, 2),
            "measured_at_seconds": round(time.time() - started, 2),
        }
        if after:
            time.sleep(after)
            result["after_seconds"] = after
            result["rss_after_wait_kib"] = rss_kib(server.pid)
            result["established_after_wait"] = established_to(port)
            try:
                stats = json.load(urllib.request.urlopen(base + "/sandbox/stats", timeout=5))
                result["stats_connections"] = stats.get("connections")
            except OSError as e:
                result["stats_error"] = str(e)
        print(json.dumps(result))
        for s in socks:
            s.close()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
