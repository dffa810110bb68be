"""Simulated members using a running server: recommendation requests, then feedback on what they watch.

    python simulate_traffic.py --url http://127.0.0.1:8000 [--hours 2] [--users-per-hour 150]

Each simulated hour, a share of the members with unseen ratings asks the server for
20 recommendations; the member then "plays" the titles of their feedback pool
(their newer MovieLens ratings, see loopdata.py) that are due this hour, sending
each as ``POST /v1/feedback`` with the request id of the response, and "clicks"
the recommended titles they later rate. At the end of each hour it publishes the
event ``ratings.arrived`` (deployments with ``@trigger`` retrain on it).
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from typing import Any

from loopdata import MODEL, split


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def simulate(url: str, *, hours: int = 2, users_per_hour: int = 150, publish: bool = True) -> dict[str, int]:
    """Send the traffic of ``hours`` simulated hours; return the counts."""
    _, pool, _ = split()
    users = sorted(pool["user_id"].unique())
    by_user = {u: g["item_id"].tolist() for u, g in pool.groupby("user_id")}
    counts = {"requests": 0, "plays": 0, "clicks": 0}
    for h in range(hours):
        share = users[h * users_per_hour:(h + 1) * users_per_hour]
        for u in share:
            resp = _post(f"{url}/v1/models/{MODEL}/recommend", {"user_id": int(u), "k": 20})
            counts["requests"] += 1
            shown = {i["item_id"] for i in resp["items"]}
            for item in by_user[u]:
                event = "click" if item in shown else "play"
                _post(f"{url}/v1/feedback", {"request_id": resp["request_id"], "user_id": int(u),
                                             "item_id": int(item), "event": event, "value": 1.0})
                counts["plays" if event == "play" else "clicks"] += 1
                if event == "click":  # a click on a recommendation is followed by the play
                    _post(f"{url}/v1/feedback", {"request_id": resp["request_id"], "user_id": int(u),
                                                 "item_id": int(item), "event": "play", "value": 1.0})
                    counts["plays"] += 1
        if publish:
            from reelflow import events

            events.publish("ratings.arrived", {"hour": h, "use_feedback": True})
        print(f"  simulated hour {h + 1}: {len(share)} members, {counts['requests']} requests, "
              f"{counts['plays']} plays, {counts['clicks']} clicks on recommendations so far", flush=True)
    return counts


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--users-per-hour", type=int, default=150)
    args = ap.parse_args()
    simulate(args.url, hours=args.hours, users_per_hour=args.users_per_hour)
