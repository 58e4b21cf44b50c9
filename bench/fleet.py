#!/usr/bin/env python3
"""Fleet benchmark row (issue 12), run by bench/fleet.sh; standard library plus wrk.

Three replicas of `protocol-graph serve` over one real Redis, beside one replica alone, all in
front of the same fake upstreams (20 ms): a cold burst of fan-out queries spread round-robin
across the replicas (upstream calls per resource, counted by the fake upstreams themselves),
then warm load on every replica at once (req/s summed). Prints one markdown table.
Everything listens on 127.0.0.1; every loop is bounded.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import free_port, wait_port  # noqa: E402

BIN, ROOT = sys.argv[1], sys.argv[2]
LATENCY_MS = os.environ.get("LATENCY_MS", "20")
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "30"))
BURST = int(os.environ.get("BURST", "30"))
QUERY = open(os.path.join(ROOT, "bench/queries/fanout.json"), "rb").read()
LUA = os.path.join(ROOT, "bench/graphql.lua")
RESOURCES = 22  # Mosia 1 + TOTVS list 1 + 20 interactions


class Upstreams:
    def __init__(self, work):
        self.mosia, self.totvs = free_port(), free_port()
        self.out = open(os.path.join(work, "upstreams.out"), "w+")
        self.proc = subprocess.Popen(
            [BIN, "upstreams", "--latency-ms", LATENCY_MS,
             "--mosia-port", str(self.mosia), "--totvs-port", str(self.totvs)],
            stdout=self.out, stderr=subprocess.DEVNULL)
        wait_port(self.mosia)
        wait_port(self.totvs)

    def served(self):
        """Resource calls the fakes served so far (token calls left out)."""
        before = self.lines()
        self.proc.send_signal(signal.SIGUSR1)
        end = time.time() + 5
        while len(self.lines()) == len(before) and time.time() < end:
            time.sleep(0.02)
        last = self.lines()[-1]
        counts = dict(re.findall(r"(\w+)=(\d+)", last))
        return sum(int(v) for k, v in counts.items() if k != "totvs_token")

    def lines(self):
        self.out.flush()
        with open(self.out.name) as f:
            return [l for l in f if l.startswith("SANDBOX_CALLS")]


def start_gateway(work, upstreams, name, redis_url=None):
    port = free_port()
    config = os.path.join(work, f"{name}.toml")
    with open(config, "w") as f:
        f.write("[cache]\nmosia_ttl_secs = 300\ntotvs_protocols_ttl_secs = 300\n"
                "totvs_interactions_ttl_secs = 300\n"
                "[rate_limit]\nper_caller_per_sec = 1000000\nper_caller_burst = 1000000\n")
    env = dict(os.environ, LISTEN_ADDR=f"127.0.0.1:{port}", AUTH_DISABLED="true",
               CONFIG_FILE=config, RUST_LOG="error",
               MOSIA_BASE_URL=f"http://127.0.0.1:{upstreams.mosia}", MOSIA_TOKEN="sandbox-mosia-token",
               TOTVS_BASE_URL=f"http://127.0.0.1:{upstreams.totvs}/rest",
               TOTVS_USERNAME="sandbox", TOTVS_PASSWORD="sandbox-password")
    if redis_url:
        env["REDIS_URL"] = redis_url
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen([BIN, "serve"], env=env, stdout=log, stderr=log)
    wait_port(port)
    return proc, port


def post(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/graphql", QUERY, {"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    return response.status == 200 and b'"errors"' not in body


def burst(ports):
    ok = []
    threads = [threading.Thread(target=lambda p=ports[i % len(ports)]: ok.append(post(p)))
               for i in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sum(ok)


def wrk(ports):
    """Warm load on every port at once, CONNECTIONS split between them; req/s summed."""
    per = max(1, CONNECTIONS // len(ports))
    env = dict(os.environ, BENCH_BODY_FILE=os.path.join(ROOT, "bench/queries/fanout.json"))
    procs = [subprocess.Popen(
        ["wrk", "-t1", f"-c{per}", f"-d{DURATION}s", "-s", LUA, f"http://127.0.0.1:{p}/graphql"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for p in ports]
    total, errors = 0.0, 0
    for proc in procs:
        out, _ = proc.communicate(timeout=DURATION + 60)
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(m.group(1)) if m else 0
    return total, errors


def row(name, upstreams, ports):
    before = upstreams.served()
    answered = burst(ports)
    cold = upstreams.served() - before
    before = upstreams.served()
    rps, errors = wrk(ports)
    warm = upstreams.served() - before
    return (f"| {name} | {answered}/{BURST} | {cold} (target {RESOURCES}) | "
            f"{rps:,.0f} | {warm} | {errors} |")


def main():
    work = tempfile.mkdtemp(prefix="protocol-graph-fleet.")
    procs = []
    try:
        upstreams = Upstreams(work)
        procs.append(upstreams.proc)
        redis_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                  "--appendonly", "no", "--bind", "127.0.0.1"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(redis)
        wait_port(redis_port)
        redis_url = f"redis://127.0.0.1:{redis_port}"
        replicas = []
        for i in range(3):
            proc, port = start_gateway(work, upstreams, f"replica{i}", redis_url)
            procs.append(proc)
            replicas.append(port)
        single, single_port = start_gateway(work, upstreams, "single")
        procs.append(single)
        print(f"Fan-out query, upstream latency {LATENCY_MS} ms, cold burst of {BURST} concurrent "
              f"queries, then {DURATION} s of wrk with {CONNECTIONS} connections in all.\n")
        print("| setup | cold burst answered | cold upstream calls | warm req/s | warm upstream calls | warm errors |")
        print("|---|--:|--:|--:|--:|--:|")
        print(row("1 replica, no Redis", upstreams, [single_port]), flush=True)
        print(row("3 replicas over one Redis, round-robin", upstreams, replicas), flush=True)
    finally:
        for proc in procs:
            proc.kill()


if __name__ == "__main__":
    main()
