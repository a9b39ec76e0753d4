"""The hub's feed dies while the market is open (the local Databento gateway stops, real client, real
runhub): within the configured minutes /healthz answers 503 naming every subscribed root, and one
feed-gap alert is queued — though the hub process itself keeps running and beating."""
from datetime import date

import pytest

from tests.e2e.appliance import ProcessEnv, wait_until
from trading.sim.gateway import LiveGateway
from trading.sim.market import generate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
KEY = "db-" + "faultsFeedGapTestKey000000005"
ROOTS = ["6A", "CL"]
GAP_MINUTES = 0.25

HEALTH = """
import json
from django.test import Client
from trading.models import Notification
r = Client(HTTP_HOST='127.0.0.1').get('/healthz')
print(json.dumps({'status': r.status_code, 'feed': r.json()['checks'].get('feed'), 'hub': r.json()['checks'].get('hub'),
                  'alerts': list(Notification.objects.filter(title__startswith='Feed').values_list('kind', 'title'))}))
"""


def test_a_dead_feed_while_the_market_is_open_degrades_health_naming_the_roots(tmp_path, fault_report):
    paths = generate(tmp_path / "market", roots=ROOTS, start=date(2026, 11, 3), days=1, seed=8, roll_day=30,
                     trades_per_minute=120.0)
    gateway = LiveGateway(list(paths.values()), key=KEY, heartbeat_interval=0.2, speed=1.0).start()
    env = ProcessEnv(tmp_path, {"DATABENTO_API_KEY": KEY, "DATABENTO_GATEWAY": f"127.0.0.1:{gateway.port}",
                                "PINEOPS_FEED_GAP_MINUTES": str(GAP_MINUTES),
                                "TRADERSPOST_IBS_A_WEBHOOK": "http://127.0.0.1:9/trading/webhook/unused",
                                "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/unused"})
    try:
        env.migrate_with_demo()
        env.shell("from trading.models import StrategyInstrument\n"
                  f"StrategyInstrument.objects.filter(strategy__name='ibs_a').exclude(instrument__root__in={ROOTS!r})"
                  ".update(enabled=False)")
        hub = env.spawn("runhub", "--heartbeat", "0.5", log_name="hub.log")
        flowing = wait_until(lambda: (lambda h: h if h["feed"] and h["feed"]["ok"] and h["hub"]["ok"] else None)(
            env.shell_json(HEALTH)), 90, "the hub beating with its feed healthy")
        assert flowing["alerts"] == []
        gateway.stop()  # the feed dies; the hub stays up, reconnecting
        degraded = wait_until(lambda: (lambda h: h if not h["feed"]["ok"] else None)(env.shell_json(HEALTH)),
                              GAP_MINUTES * 60 + 60, "/healthz naming the dead feed", interval=1.0)
        assert hub.poll() is None and degraded["status"] == 503 and degraded["hub"]["ok"]
        assert all(f"{root}: no {root} trade since" in degraded["feed"]["error"] for root in ROOTS)
        settled = env.shell_json(HEALTH)  # one alert for the incident, however long it lasts
        assert settled["alerts"] == [["emergency", "Feed gap: no trades for 6A, CL"]]
    finally:
        gateway.stop()
        env.cleanup()
    fault_report("feed dead while the market is open", runs=1, expected=1, received=len(settled["alerts"]),
                 duplicates=len(settled["alerts"]) - 1, lost=0)
