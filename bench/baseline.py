"""The bare stack gq is built on, with nothing of gq: gevent monkey-patching, one
gevent.pool.Pool and one tuned requests.Session (no proxies from the environment,
a connection pool as large as the Pool, no retries). Each request is sent and read
the way gq's HTTP worker does it (same headers, a bytes body, no redirects, the
answer streamed and read up to 64 KiB), so that the difference with gq is gq's own
machinery: queue, dispatcher, journal, metrics, per-attempt timeout, bookkeeping.

Two uses, both by bench/bench.py:
  default      POST COUNT JSON bodies to URL, each with its own Idempotency-Key:
               the baseline gq's delivery is measured against.
  --batch N    POST COUNT JSON arrays of N jobs each to a gq daemon's /v1/jobs:
               the load client of the intake measurement.

Prints one JSON object on stdout: requests, statuses, seconds (of the request loop
only), jobs/s, this process's CPU per job (user + sys from getrusage, the
interpreter's start and imports included) and its peak RSS. The loop stops after
COUNT requests or --max-seconds, whichever comes first.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent.pool  # noqa: E402
import requests  # noqa: E402
from requests.adapters import HTTPAdapter  # noqa: E402

MAX_RESPONSE_BYTES = 65536


def session(pool: int) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers = {"User-Agent": "gq-bench-baseline/1", "Accept": "*/*"}
    return s


def job_body(seq: int) -> dict:
    """What every benchmark job carries, in the baseline and in gq alike."""
    return {"seq": seq, "event": "bench", "source": "gq-bench"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, required=True, help="requests to send")
    p.add_argument("--pool", type=int, required=True, help="requests in flight at once")
    p.add_argument("--batch", type=int, default=0, help="jobs per request, as a JSON array of gq jobs")
    p.add_argument("--prefix", default="base-", help="Idempotency-Key / job id prefix")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds, per request")
    p.add_argument("--max-seconds", type=float, default=120.0, help="bound on the whole loop")
    args = p.parse_args()

    http = session(args.pool)
    statuses: Counter = Counter()
    errors: Counter = Counter()

    def send(i: int) -> None:
        if args.batch:
            first = i * args.batch
            body = [{"id": f"{args.prefix}{n}", "json": job_body(n)} for n in range(first, first + args.batch)]
            headers = {"Content-Type": "application/json"}
        else:
            body = job_body(i)
            headers = {"Content-Type": "application/json", "Idempotency-Key": f"{args.prefix}{i}"}
        try:
            r = http.post(args.url, data=json.dumps(body, separators=(",", ":")).encode(), headers=headers,
                          timeout=args.timeout, allow_redirects=False, stream=True)
            try:
                r.raw.read(MAX_RESPONSE_BYTES)
            finally:
                r.close()
            statuses[r.status_code] += 1
        except (requests.RequestException, OSError) as e:
            errors[type(e).__name__] += 1

    pool = gevent.pool.Pool(args.pool)
    started = time.monotonic()
    deadline = started + args.max_seconds
    sent = 0
    for i in range(args.count):
        if time.monotonic() > deadline:
            break
        pool.spawn(send, i)   # blocks while `pool` requests are in flight
        sent += 1
    finished = pool.join(timeout=max(0.0, deadline - time.monotonic()))
    pool.kill(block=True, timeout=5)
    seconds = time.monotonic() - started

    jobs = sent * (args.batch or 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "requests": sent, "jobs": jobs,
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": dict(errors),
        "complete": bool(finished) and sent == args.count,
        "seconds": round(seconds, 4),
        "jobs_per_s": round(jobs / seconds, 1) if seconds else 0.0,
        "cpu_us_per_job": round((usage.ru_utime + usage.ru_stime) / jobs * 1e6, 1) if jobs else 0.0,
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
