"""Crash durability: is every acknowledged annotation still there after SIGKILL?

Client threads post annotations as fast as they can, each post carrying a unique marker,
while the server (gunicorn, master and worker together) is killed with SIGKILL at random
moments and restarted on the same data folder. Afterwards every marker whose post was
acknowledged (201) must be readable. Posts cut off by a kill got no reply: the client cannot
know their fate, so they may be stored or not ("in doubt"). Exits 1 if any acknowledged
annotation is missing.

    python bench/crash.py [--kills 5] [--clients 8] [--launcher gunicorn|python]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.live_server import LiveServer  # noqa: E402


@dataclass
class Ledger:
    """What each client knows: the markers acknowledged, and those sent without a reply."""

    acknowledged: set[str] = field(default_factory=set)
    in_doubt: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, marker: str, acknowledged: bool) -> None:
        with self.lock:
            (self.acknowledged if acknowledged else self.in_doubt).add(marker)


def hash_id(client: int) -> str:
    return f"crash-client-{client}"


def poster(url: str, client: int, ledger: Ledger, stop: threading.Event) -> None:
    """Post one new version per request, back to back."""
    sequence = 0
    with requests.Session() as session:
        while not stop.is_set():
            marker = f"{client}-{sequence}"
            sequence += 1
            annotation = {"onset": sequence, "offset": sequence + 0.5, "marker": marker}
            try:
                reply = session.post(
                    f"{url}/post-annotations/{hash_id(client)}",
                    json={"annotations": [annotation]},
                    timeout=30,
                )
                ledger.note(marker, reply.status_code == 201)
            except requests.RequestException:
                ledger.note(marker, False)
                wait_until_up(session, url, stop)


def wait_until_up(session: requests.Session, url: str, stop: threading.Event) -> None:
    """Poll until the server answers again, so that "in doubt" counts only posts a kill cut."""
    while not stop.is_set():
        try:
            if session.get(url + "/get-status", timeout=5).ok:
                return
        except requests.RequestException:
            time.sleep(0.2)


def stored_markers(url: str, clients: int) -> set[str]:
    markers = set()
    for client in range(clients):
        versions = requests.get(f"{url}/get-annotations/{hash_id(client)}", timeout=60).json()
        markers |= {a["marker"] for v in versions for a in v["annotations"]}
    return markers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--min-uptime", type=float, default=1.0, help="seconds before a kill")
    parser.add_argument("--max-uptime", type=float, default=4.0)
    parser.add_argument("--launcher", choices=["gunicorn", "python"], default="gunicorn")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    ledger, stop = Ledger(), threading.Event()
    with tempfile.TemporaryDirectory(prefix="whisperseg-crash-") as tmp:
        server = LiveServer(Path(tmp), launcher=args.launcher)
        server.start()
        threads = [
            threading.Thread(target=poster, args=(server.url, client, ledger, stop))
            for client in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        for kill in range(1, args.kills + 1):
            time.sleep(rng.uniform(args.min_uptime, args.max_uptime))
            server.kill()
            print(f"kill {kill}: SIGKILL after {len(ledger.acknowledged)} acknowledged posts")
            server.start()
        time.sleep(args.min_uptime)  # some posts on the last restart too
        stop.set()
        for thread in threads:
            thread.join()
        stored = stored_markers(server.url, args.clients)
        server.stop()
    lost = ledger.acknowledged - stored
    print(f"\n{args.launcher}, {args.clients} clients, {args.kills} SIGKILLs")
    print(f"acknowledged: {len(ledger.acknowledged)}")
    print(f"acknowledged and stored after the restarts: {len(ledger.acknowledged & stored)}")
    print(f"lost: {len(lost)}{' ' + str(sorted(lost)[:10]) if lost else ''}")
    print(f"in doubt (no reply, cut off by a kill): {len(ledger.in_doubt)}, "
          f"of which stored: {len(ledger.in_doubt & stored)}")  # fmt: skip
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
