#!/usr/bin/env python3
"""A taskraft pull worker in Python, standard library only.

It leases tasks through a master's HTTP JSON API, upper-cases each payload
and completes it with the result. It follows the leader: a follower answers
307 with the leader's address, and a master that does not answer is
skipped for the next seed.

    python3 examples/python-worker.py --seeds http://127.0.0.1:7201,http://127.0.0.1:7202 \
        --worker py-1 [--token TOKEN] [--ca ca.pem] [--exit-when-drained]

The token may also come from TASKRAFT_TOKEN. See docs/http-api.md.
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class Cluster:
    """Calls the JSON API on whichever master leads, following redirects."""

    def __init__(self, seeds, token, ca):
        self.seeds = seeds
        self.base = seeds[0]
        self.token = token
        self.context = ssl.create_default_context(cafile=ca) if ca else None

    def call(self, path, body, timeout):
        """POSTs body to path; returns the JSON answer. Retries other masters
        for up to a minute while none answers or none leads."""
        deadline = time.monotonic() + 60
        tried = 0
        while True:
            url = self.base + path
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(), method="POST",
                headers={"Content-Type": "application/json"})
            if self.token:
                request.add_header("Authorization", "Bearer " + self.token)
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=self.context) as r:
                    return json.load(r)
            except urllib.error.HTTPError as e:
                answer = read_json(e)
                if e.code == 307 and e.headers.get("Location"):
                    # A follower: the same call goes to the leader (urllib
                    # does not re-send a POST on a 307 by itself).
                    location = urllib.parse.urlsplit(e.headers["Location"])
                    self.base = f"{location.scheme}://{location.netloc}"
                    self.give_up_after(deadline, path)
                    time.sleep(0.02)
                    continue
                if e.code != 503:
                    raise SystemExit(f"{path}: HTTP {e.code}: {answer}")
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
                # This master does not answer, or its answer was cut off (it
                # died mid-call). Retrying is safe: a report of the same lease
                # is fenced (at worst "duplicate"), a lease of new work is new.
                pass
            self.give_up_after(deadline, path)
            tried += 1
            self.base = self.seeds[tried % len(self.seeds)]
            time.sleep(0.1)

    def give_up_after(self, deadline, path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path}: no master led and answered for a minute ({self.seeds})")


def read_json(error):
    try:
        return json.load(error)
    except ValueError:
        return None


def handle(data):
    """The work itself: upper-case the payload."""
    return data.upper()


def main():
    parser = argparse.ArgumentParser(description="A taskraft pull worker over HTTP.")
    parser.add_argument("--seeds", required=True,
                        help="comma-separated master URLs, e.g. http://127.0.0.1:7201")
    parser.add_argument("--worker", default=f"py-{os.getpid()}", help="this worker's id")
    parser.add_argument("--token", default=os.environ.get("TASKRAFT_TOKEN"),
                        help="the cluster token (default: TASKRAFT_TOKEN)")
    parser.add_argument("--ca", help="CA file to trust for https masters")
    parser.add_argument("--max", type=int, default=4, help="tasks leased per call")
    parser.add_argument("--exit-when-drained", action="store_true",
                        help="stop once nothing is idle or in progress")
    args = parser.parse_args()

    cluster = Cluster([s.rstrip("/") for s in args.seeds.split(",") if s], args.token, args.ca)
    done = 0
    while True:
        answer = cluster.call(
            "/v1/lease", {"worker": args.worker, "max": args.max, "wait_ms": 5000}, timeout=15)
        if answer["state"] == "drained":
            if args.exit_when_drained:
                break
            time.sleep(0.5)
            continue
        if answer["state"] != "leased":
            continue
        for task in answer["tasks"]:
            if "data" not in task:
                # Not text: this example handles text payloads only.
                body = {"worker": args.worker, "task": task["task"], "attempt": task["attempt"],
                        "error": "the python example handles text payloads only"}
                cluster.call("/v1/fail", body, timeout=15)
                continue
            body = {"worker": args.worker, "task": task["task"], "attempt": task["attempt"],
                    "result": handle(task["data"])}
            outcome = cluster.call("/v1/complete", body, timeout=15)["outcome"]
            # "stale": the lease ran out and the task went to someone else;
            # "duplicate": this completion already counted. Both change nothing.
            if outcome == "accepted":
                done += 1
            print(f"{args.worker} task {task['task']} attempt {task['attempt']}: {outcome}",
                  flush=True)
    print(f"{args.worker}: drained after {done} completions", flush=True)


if __name__ == "__main__":
    sys.exit(main())
