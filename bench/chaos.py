#!/usr/bin/env python3
"""Resilience drill of the gateway (issue 9), run by bench/chaos.sh; standard library only.

Three phases against `protocol-graph serve` in front of the fake upstreams, all on 127.0.0.1:

1. upstreams killed and restarted under load: every request must still get an HTTP answer
   (GraphQL errors or stale data are answers; a reset connection or a timeout is a drop);
2. slow clients: SLOW connections trickle request heads; normal requests must still be answered;
3. SIGTERM under load: requests in flight finish, the process exits within the grace period;
4. a hostile upstream answering every call with an oversized body, 8 concurrent requests at the
   cost limit: peak RSS (VmHWM) under 200 MiB, and RSS back under 100 MiB within a minute.

Prints one line per phase and a total `dropped` (target 0); exits 1 when anything dropped.
Every loop is bounded in count and time.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port, wait_port  # noqa: E402

BIN = sys.argv[1]
WORK = sys.argv[2]
LATENCY_MS = int(os.environ.get("LATENCY_MS", "20"))
SECONDS = int(os.environ.get("CHAOS_SECONDS", "10"))
WORKERS = int(os.environ.get("CHAOS_WORKERS", "16"))
SLOW = int(os.environ.get("SLOW", "2000"))
GRACE_MS = int(os.environ.get("GRACE_MS", "5000"))

QUERY = json.dumps({
    "query": '{ beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000031015") '
             '{ latestProtocols(limit: 3) { number } authorizationProtocols(pageSize: 5) '
             '{ items { protocol interactions { items { reason } } } } } }'
}).encode()


class Upstreams:
    def __init__(self):
        self.mosia, self.totvs = free_port(), free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [BIN, "upstreams", "--latency-ms", str(LATENCY_MS),
             "--mosia-port", str(self.mosia), "--totvs-port", str(self.totvs)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.mosia)
        wait_port(self.totvs)

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def start_gateway(upstreams, port, extra=""):
    config = os.path.join(WORK, "chaos.toml")
    with open(config, "w") as f:
        f.write(f"[cache]\nmosia_ttl_secs = 1\ntotvs_protocols_ttl_secs = 1\n"
                f"totvs_interactions_ttl_secs = 1\n"
                f"[server]\nheader_read_timeout_ms = 3000\nshutdown_grace_ms = {GRACE_MS}\n"
                + (extra or "[upstream]\ntimeout_ms = 2000\n") + "[limits]\nrequest_timeout_ms = 5000\n")
    env = dict(os.environ,
               LISTEN_ADDR=f"127.0.0.1:{port}", AUTH_DISABLED="true", CONFIG_FILE=config,
               MOSIA_BASE_URL=f"http://127.0.0.1:{upstreams.mosia}",
               MOSIA_TOKEN="sandbox-mosia-token",
               TOTVS_BASE_URL=f"http://127.0.0.1:{upstreams.totvs}/rest",
               TOTVS_USERNAME="sandbox", TOTVS_PASSWORD="sandbox-password", RUST_LOG="error")
    log = open(os.path.join(WORK, "gateway.log"), "ab")
    proc = subprocess.Popen([BIN, "serve"], env=env, stdout=log, stderr=log)
    wait_port(port)
    return proc


class Load:
    """WORKERS keep-alive clients posting QUERY until stopped; counts outcomes."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"answered": 0, "with_errors": 0, "non_200": 0, "dropped": 0,
                       "refused_after_shutdown": 0}
        self.shutting_down = False
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(WORKERS)]

    def add(self, key):
        with self.lock:
            self.counts[key] += 1

    def one(self, conn):
        conn.request("POST", "/graphql", QUERY, {"Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            self.add("non_200")
        else:
            self.add("answered")
            if b'"errors"' in body:
                self.add("with_errors")
        if response.getheader("connection", "").lower() == "close":
            conn.close()

    def run(self):
        conn = None
        end = time.time() + SECONDS + 30
        while not self.stop.is_set() and time.time() < end:
            fresh = conn is None
            if fresh:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            try:
                self.one(conn)
            except ConnectionRefusedError:
                conn = None
                if self.shutting_down:
                    self.add("refused_after_shutdown")
                    return
                self.add("dropped")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as err:
                conn.close()
                conn = None
                # A kept-alive connection the server closed while idle fails before the server
                # read the request: every HTTP client sends again on a new one, and so do we.
                if not fresh:
                    continue
                if self.shutting_down:
                    self.add("refused_after_shutdown")
                    return
                self.add("dropped")
                print(f"chaos: dropped: {err!r}", file=sys.stderr)
            except (socket.timeout, OSError) as err:
                conn.close()
                conn = None
                self.add("dropped")
                print(f"chaos: dropped: {err!r}", file=sys.stderr)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def phase_upstream_restart(port, upstreams):
    with Load(port) as load:
        time.sleep(SECONDS * 0.3)
        upstreams.kill()
        time.sleep(SECONDS * 0.4)
        upstreams.start()
        time.sleep(SECONDS * 0.3)
    return load.counts


def phase_slow_clients(port):
    import resource
    # This process needs descriptors of its own for the normal requests.
    count = min(SLOW, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    slow = []
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"POST /graphql HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        except OSError:
            break
    failed = 0
    for _ in range(50):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/graphql", QUERY, {"Content-Type": "application/json"})
            if conn.getresponse().status != 200:
                failed += 1
            conn.close()
        except OSError:
            failed += 1
    for s in slow:
        s.close()
    return {"slow_connections": len(slow), "normal_requests": 50, "dropped": failed}


def phase_sigterm(port, gateway):
    load = Load(port)
    with load:
        time.sleep(2)
        load.shutting_down = True
        started = time.time()
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=GRACE_MS / 1000 + 10)
        except subprocess.TimeoutExpired:
            gateway.kill()
            load.counts["exit_after_grace"] = 1
        load.counts["exit_seconds"] = round(time.time() - started, 2)
    return load.counts


class Hostile:
    """A TOTVS that grants tokens and answers every read with a body just under the cap."""

    BODY = b'{"items": "' + b"x" * (500 * 1024) + b'"}'

    def __init__(self):
        import http.server

        body = self.BODY

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def answer(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.answer(201, b'{"access_token":"t","refresh_token":"r","token_type":"Bearer","expires_in":3600}')

            def do_GET(self):
                self.answer(200, body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def phase_hostile_upstream():
    hostile = Hostile()
    upstreams = Upstreams()
    upstreams.totvs = hostile.port
    upstreams.mosia = hostile.port
    port = free_port()
    extra = "[upstream]\nbreaker_failures = 100\ntimeout_ms = 5000\n"
    gateway = start_gateway(upstreams, port, extra)
    aliases = " ".join(f"p{i}: authorizationProtocols(page: {i + 1}, pageSize: 1) {{ hasNext }}"
                       for i in range(127))
    query = json.dumps({"query": '{ beneficiary(subscriberId: "00011008000031015") { ' + aliases + " } }"}).encode()
    failed = []

    def one():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/graphql", query, {"Content-Type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            # UPSTREAM_ERROR per field, or REQUEST_TIMEOUT when the slow fake cannot keep up:
            # both are answers; only a missing one is a drop.
            if response.status != 200 or b'"errors"' not in body:
                failed.append(response.status)
        except OSError as err:
            failed.append(repr(err))

    try:
        for _ in range(3):
            threads = [threading.Thread(target=one) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        peak = rss_kib(gateway.pid, "VmHWM") // 1024
        settled = None
        for _ in range(60):
            rss = rss_kib(gateway.pid, "VmRSS") // 1024
            if rss < 100:
                settled = rss
                break
            time.sleep(1)
        return {"requests": 24, "dropped": len(failed), "peak_rss_mib": peak,
                "rss_after_mib": settled if settled is not None else rss_kib(gateway.pid, "VmRSS") // 1024,
                "over_bounds": int(peak >= 200 or settled is None)}
    finally:
        gateway.kill()
        hostile.server.shutdown()


def main():
    upstreams = Upstreams()
    upstreams.start()
    port = free_port()
    gateway = start_gateway(upstreams, port)
    dropped = 0
    try:
        for name, run in [
            ("upstreams killed and restarted under load", lambda: phase_upstream_restart(port, upstreams)),
            ("slow clients", lambda: phase_slow_clients(port)),
            ("SIGTERM under load", lambda: phase_sigterm(port, gateway)),
            ("hostile upstream, oversized bodies, 8 requests at the cost limit", phase_hostile_upstream),
        ]:
            counts = run()
            dropped += (counts.get("dropped", 0) + counts.get("non_200", 0)
                        + counts.get("exit_after_grace", 0) + counts.get("over_bounds", 0))
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    finally:
        if gateway.poll() is None:
            gateway.kill()
        upstreams.kill()
    print(f"dropped: {dropped} (target 0)")
    return 1 if dropped else 0


if __name__ == "__main__":
    sys.exit(main())
