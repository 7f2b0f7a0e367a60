"""`genesis run` raises, stores and delivers alerts (a real webhook receiver that fails each first
attempt, real Redis pub/sub), the report counts them, and `genesis alerts` lists and acks them."""

from __future__ import annotations

import json
from pathlib import Path

import redis
import yaml

from tests.e2e.conftest import CLI
from tests.services import redis_url
from tests.webhook_receiver import webhook_receiver

PUBSUB = redis_url(7)  # pub/sub only: no keys
CLIP = ["--camera", "entrance", "--stride", "3", "--max-frames", "40"]  # every 3rd of the first 120 frames


def test_run_raises_alerts_delivers_them_once_and_lists_them(cli: CLI, data_dir: Path, tmp_path: Path) -> None:
    subscriber = redis.Redis.from_url(PUBSUB).pubsub()
    subscriber.subscribe("genesis:alerts:entrance")
    with webhook_receiver(fail_first=True) as receiver:
        config = tmp_path / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "alerts": {"delivery": {"backoff_s": 0.1, "backoff_max_s": 0.5}},
            "cameras": [{
                "id": "entrance",
                "zones": [
                    {"name": "walkway", "points": [[0.25, 0.45], [0.75, 0.45], [0.75, 1.0], [0.25, 1.0]],
                     "max_occupancy": 1},
                    {"name": "kiosk", "points": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], "restricted": True},
                ],
                "alerts": {"loitering_s": 30.0, "zone_loitering_s": {"kiosk": 3.0},
                           "webhooks": [{"url": receiver.url, "kinds": ["crowding", "restricted"]}]},
            }],
        }))
        cli.env.update(GENESIS_CONFIG=str(config), GENESIS_REDIS_URL=PUBSUB)
        out = tmp_path / "out"
        run = cli("run", "--source", str(data_dir / "video" / "opencv4nodejs_people.mp4"), *CLIP, "--out", str(out))
        report = json.loads((out / "report.json").read_text())
        alerts = report["results"]["alerts"]
        kinds = alerts["by_kind"]
        assert kinds["crowding"] == 1, alerts  # the walkway stays over 1 person: one episode
        assert kinds["restricted"] >= 1 and kinds["loitering"] >= 1 and kinds["anomaly"] == 0
        assert alerts["count"] == sum(kinds.values()) == len(alerts["items"])
        assert all(a["zone"] == "kiosk" for a in alerts["items"] if a["kind"] == "loitering")
        assert "Alerts (" in run.stdout and "people in walkway (max 1)" in run.stdout
        # Delivered before the run exited: each webhook alert accepted exactly once after one HTTP 500.
        hooked = kinds["crowding"] + kinds["restricted"]
        accepted = receiver.accepted()
        assert len(accepted) == hooked and set(accepted.values()) == {1}
        assert set(receiver.refused()) == set(accepted) and set(receiver.refused().values()) == {1}
        assert {r.body["kind"] for r in receiver.requests} == {"crowding", "restricted"}
        delivery = report["run"]["alert_delivery"]
        assert delivery == {"alerts": alerts["count"], "delivered": alerts["count"] + hooked, "failed": 0,
                            "pending": 0}
    published = set()
    while (msg := subscriber.get_message(timeout=1.0)) is not None:
        if msg["type"] == "message":
            published.add(json.loads(msg["data"])["id"])
    subscriber.close()
    assert len(published) == alerts["count"]

    listed = cli("alerts", "--camera", "entrance", "--json").stdout.splitlines()
    docs = [json.loads(line) for line in listed]
    assert {d["id"] for d in docs} == published
    assert sum(1 for d in docs if d["kind"] == "crowding") == 1
    assert cli("alerts", "--kind", "crowding", "--json").stdout.count("\n") == 1
    assert cli("alerts", "--camera", "elsewhere").stdout.strip() == "no alerts"
    assert cli("alerts", "--since", "1h", "--json").stdout.count("\n") == alerts["count"]
    assert cli("alerts", "--until", "1h", "--json").stdout == ""
    table = cli("alerts", "--limit", "3").stdout
    assert "Alerts (3, newest first)" in table and "entrance" in table
    crowding = next(d for d in docs if d["kind"] == "crowding")
    assert f"acknowledged {crowding['alert_id']}" in cli("alerts", "ack", str(crowding["alert_id"])).stdout
    acked = [json.loads(x) for x in cli("alerts", "--kind", "crowding", "--json").stdout.splitlines()]
    assert acked[0]["acknowledged_at"] is not None
    bad = cli("alerts", "--kind", "teleport", check=False)
    assert bad.returncode == 2 and "--kind must be one of" in bad.stderr
    missing = cli("alerts", "ack", "99999", check=False)
    assert missing.returncode == 1 and "no alert with id 99999" in missing.stderr
