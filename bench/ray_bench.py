"""Ray's figures for `make bench`, on the same trivial task (return the input): async
throughput with every task submitted at once, and the synchronous round trip. Prints one
JSON line on stdout; progress goes to stderr."""
import argparse
import json
import os
import sys
import time

import ray


@ray.remote
def echo(data: bytes) -> bytes:
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--sync-tasks", type=int, default=1000)
    parser.add_argument("--input-size", type=int, default=16)
    args = parser.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    data = b"x" * args.input_size
    ray.get([echo.remote(data) for _ in range(500)])  # warm the worker pool

    print(f"ray: {args.tasks} tasks in flight...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    ray.get([echo.remote(data) for _ in range(args.tasks)])
    seconds = time.perf_counter() - started

    print(f"ray: {args.sync_tasks} tasks one at a time...", file=sys.stderr, flush=True)
    latencies = []
    for _ in range(args.sync_tasks):
        t = time.perf_counter()
        ray.get(echo.remote(data))
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99 + 0.5) - 1)]
    print(json.dumps({
        "version": ray.__version__,
        "tasks": args.tasks,
        "throughput": args.tasks / seconds,
        "sync_p50_ms": latencies[len(latencies) // 2],
        "sync_p99_ms": p99,
    }))
    ray.shutdown()


if __name__ == "__main__":
    main()
