"""Throughput and latency of ``genkit serve`` under 1, 8 and 32 concurrent clients.

Starts ``python -m genkit.serve --plugin diffusion --plugin gpt`` in its own process and,
per model, sends the same fixed set of requests (one sample each, every request its own
seed) with 1 client in series, then 8 and 32 concurrent clients. Prints requests/s,
samples/s and p50/p99 latency for each level, the throughput of 32 clients beside one
client in series (the dynamic batcher is what makes the difference: requests that arrive
together share a generation batch), failed requests, and the server's RSS after warm-up
and after the run. Goals: >= 3x for diffusion, >= 2x for gpt, zero failures, RSS within 10%.

    python benchmarks/serve_load.py                     # 64 requests per level and model
    python benchmarks/serve_load.py --requests 128 --max-batch 32 --batch-wait-ms 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["The return statement", "A class is", "def f(x):", "import os", "The list type",
           "Exceptions are"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=64, help="requests per level and model")
    p.add_argument("--clients", default="1,8,32", help="concurrency levels (the first: series)")
    p.add_argument("--new-tokens", type=int, default=64, help="gpt tokens per request")
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    p.add_argument("--quick", action="store_true", help="a short smoke run (16 requests)")
    args = p.parse_args()
    if args.quick:
        args.requests = min(args.requests, 16)
    return args


# ------------------------------------------------------------------------------ server
class Server:
    """``genkit serve`` in a child process on a free port."""

    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, "-m", "genkit.serve", "--plugin", "diffusion", "--plugin", "gpt",
               "--port", "0", "--device", "cpu", "--threads", str(args.threads),
               "--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms),
               "--max-queue", "4096"]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        line = self.proc.stderr.readline()
        if "genkit serve: http" not in line:
            self.proc.kill()
            raise SystemExit(f"the server did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split()[2].rstrip("/")
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ------------------------------------------------------------------------------ load
def request_body(model: str, i: int, args: argparse.Namespace) -> dict:
    if model == "diffusion":
        return {"model": "diffusion", "n": 1, "seed": i, "label": i % 10}
    return {"model": "gpt", "n": 1, "seed": i, "prompt": PROMPTS[i % len(PROMPTS)],
            "options": {"max_new_tokens": args.new_tokens, "stop_at_eos": False}}


def run_level(url: str, model: str, clients: int, requests: int,
              args: argparse.Namespace) -> dict:
    """``requests`` requests shared by ``clients`` threads, each sending one at a time."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    samples = 0
    next_index = iter(range(requests))
    lock = threading.Lock()

    sessions = [httpx.Client(base_url=url, timeout=300) for _ in range(clients)]
    go = threading.Barrier(clients + 1)  # every client ready before the clock starts

    def client(http: httpx.Client) -> None:
        nonlocal samples
        go.wait()
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                r = http.post("/v1/generate", json=request_body(model, i, args))
                ok = r.status_code == 200
                got = len(r.json()["samples"]) if ok else 0
                error = "" if ok else f"{r.status_code} {r.text[:200]}"
            except Exception as exc:  # a failed request is counted
                got, error = 0, f"{type(exc).__name__}: {exc}"
            with lock:
                latencies.append(time.perf_counter() - start)
                samples += got
                if error:
                    failures.append(error)

    threads = [threading.Thread(target=client, args=(http,)) for http in sessions]
    for t in threads:
        t.start()
    go.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    for http in sessions:
        http.close()
    latencies.sort()
    return {"clients": clients, "requests": requests, "seconds": seconds,
            "req_per_s": requests / seconds, "samples_per_s": samples / seconds,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "failed": len(failures), "first_failure": failures[0] if failures else ""}


def batches(url: str, model: str) -> tuple[int, int, float]:
    """The server's count of batches and samples so far, and its seconds generating."""
    import httpx

    stats = httpx.get(url + "/v1/health", timeout=30).json()["models"][model]
    return stats["batches"], stats["samples"], stats["busy_s"]


# ------------------------------------------------------------------------------ main
def main() -> None:
    args = parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    server = Server(args)
    goals = {"diffusion": 3.0, "gpt": 2.0}
    failed = 0
    try:
        print(f"server {server.url}: diffusion + gpt (shipped models), max batch "
              f"{args.max_batch}, batch wait {args.batch_wait_ms:g} ms, {args.threads} torch "
              f"thread(s); {args.requests} requests per level (1 sample each; gpt "
              f"{args.new_tokens} new tokens)")
        for model in goals:  # warm-up: every batch shape the run will use
            run_level(server.url, model, max(levels), max(levels), args)
        rss_warm = server.rss_mb()
        print(f"server RSS after warm-up: {rss_warm:.0f} MB")
        for model, goal in goals.items():
            results = []
            for clients in levels:
                before = batches(server.url, model)
                r = run_level(server.url, model, clients, args.requests, args)
                after = batches(server.url, model)
                made = after[0] - before[0]
                r["mean_batch"] = (after[1] - before[1]) / made if made else 0.0
                r["busy"] = (after[2] - before[2]) / r["seconds"]
                results.append(r)
                failed += r["failed"]
                what = "1 client in series" if clients == 1 else f"{clients} concurrent clients"
                print(f"{model:9s} {what:22s} {r['req_per_s']:7.2f} req/s {r['samples_per_s']:7.2f}"
                      f" samples/s  p50 {r['p50_ms']:6.0f} ms  p99 {r['p99_ms']:6.0f} ms  mean "
                      f"batch {r['mean_batch']:4.1f}  model busy {r['busy']:4.0%}  failed "
                      f"{r['failed']}"
                      + (f"  ({r['first_failure']})" if r["failed"] else ""))
                name = f"serve_load_{model}_c{clients}"
                print(f"RESULT {name}_req_per_s={r['req_per_s']:.2f} requests/s")
                print(f"RESULT {name}_samples_per_s={r['samples_per_s']:.2f} samples/s")
                print(f"RESULT {name}_p50_ms={r['p50_ms']:.0f} ms")
                print(f"RESULT {name}_p99_ms={r['p99_ms']:.0f} ms")
            series, top = results[0], results[-1]
            ratio = top["req_per_s"] / series["req_per_s"]
            print(f"{model}: {top['clients']} clients give {ratio:.2f}x the throughput of one "
                  f"client in series (goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'})")
            print(f"RESULT serve_load_{model}_speedup_c{top['clients']}={ratio:.2f} x")
        rss_after = server.rss_mb()
        growth = rss_after / rss_warm
        print(f"server RSS after the run: {rss_after:.0f} MB ({(growth - 1) * 100:+.1f}% "
              f"since warm-up; goal within 10%)")
        print(f"RESULT serve_load_failed_requests={failed}")
        print(f"RESULT serve_load_rss_warm_mb={rss_warm:.0f} MB")
        print(f"RESULT serve_load_rss_after_mb={rss_after:.0f} MB")
        print(f"RESULT serve_load_rss_ratio={growth:.3f}")
    finally:
        server.stop()
        tail = "".join(server.log[-20:])
        if failed and tail:
            print("server log (last lines):\n" + tail)


if __name__ == "__main__":
    main()
