"""Orders handed from the worker to its sender (execution.handoff): sent at once without a pending query,
claimed with their attempt logged in one go, never sent twice, never ahead of an earlier order of
their instrument, never from a stale message; anything out of the ordinary settled the outbox's way; one
kept-alive connection per webhook; the pipe never blocks the worker."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.execution.test_outbox import Result, ScriptedBroker
from trading.delivery.outcomes import Outcome
from trading.execution import handoff
from trading.execution.outbox import OutboxReport, send_pending_orders
from trading.execution.recovery import recover_interrupted
from trading.execution.sender import DetachedSender, run_sender
from trading.models import DeliveryAttempt, PaperOrder, Signal, Strategy, signal_key
from trading.risk.killswitch import set_mode

pytestmark = pytest.mark.django_db


def make_signal(strategy, root: str, hours_ago: int, action: str = "buy") -> Signal:
    leg = strategy.legs.get(instrument__root=root)
    bar = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)
    return Signal.objects.create(
        key=signal_key(strategy.name, root, bar, action), strategy=strategy, instrument=leg.instrument, bar_time=bar,
        action=action, quantity=1, signal_price=Decimal("71.25"), reason="entry",
        payload={"ticker": root, "action": action, "quantity": 1, "orderType": "market", "signalPrice": 71.25,
                 "timeInForce": "day", "extras": {"signal_id": signal_key(strategy.name, root, bar, action)}},
        expires_at=timezone.now() + timedelta(hours=6))


@pytest.fixture
def strategy(webhook_env):
    call_command("load_demo")
    return Strategy.objects.get(name="ibs_a")


def test_a_handed_order_is_posted_once_without_a_pending_query_and_its_attempt_logged(strategy, webhook_env):
    sig = make_signal(strategy, "CL", 1)
    broker = ScriptedBroker(Result("delivered", 200, "ok"))
    with CaptureQueriesContext(connection) as queries:
        assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker) == Signal.State.SENT
    before_post = [q["sql"] for q in queries.captured_queries]
    pending_query = [sql for sql in before_post if '"next_attempt_at" IS NULL' in sql and sql.lstrip().startswith("SELECT")]
    assert pending_query == []
    assert broker.calls == [(webhook_env["TRADERSPOST_IBS_A_WEBHOOK"], sig.payload)]
    sig.refresh_from_db()
    assert sig.state == "sent" and sig.attempts == 1
    assert list(DeliveryAttempt.objects.filter(signal=sig).values_list("number", "outcome")) == [(1, "delivered")]
    # Handed again (a duplicate line, a second sender): not pending any more, so no second POST.
    assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker) is None
    assert len(broker.calls) == 1


def test_a_handed_order_reaches_its_post_reading_no_row_and_claimed_in_one_statement(strategy):
    """Before the POST: the killswitch's plain read and the claim with its started attempt (on PostgreSQL one
    statement; on SQLite the claim's UPDATE and the attempt's INSERT in one transaction), nothing else."""
    sig = make_signal(strategy, "CL", 1)
    seen = {}

    def broker(url, payload, timeout):
        seen["before_post"] = [q["sql"] for q in queries.captured_queries
                               if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN"))]
        return Result("delivered", 200, "ok")

    with CaptureQueriesContext(connection) as queries:
        assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker) == Signal.State.SENT
    statements = seen["before_post"]
    assert [sql for sql in statements if "trading_signal" in sql and sql.lstrip().startswith("SELECT")] == []
    if connection.vendor == "postgresql":
        assert len(statements) == 2 and statements[1].startswith("WITH claimed AS (UPDATE")
    else:
        assert len(statements) == 3 and statements[1].startswith("UPDATE") and statements[2].startswith("INSERT")
    assert "trading_killswitch" in statements[0]


def test_a_stale_handed_message_is_not_posted_and_the_outbox_sends_the_order_once(strategy):
    """The order was tried since it was handed over (attempts differ): the message is not this sender's to
    act on; the row, due again, goes out once through the outbox with its own count."""
    sig = make_signal(strategy, "CL", 1)
    message = handoff.order_message(sig)
    Signal.objects.filter(pk=sig.pk).update(attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1))
    broker = ScriptedBroker()
    assert handoff.send_handed(message, strategy, deliver=broker) is None
    assert broker.calls == [] and not DeliveryAttempt.objects.filter(signal=sig).exists()
    assert send_pending_orders(deliver=broker).sent == [sig.key]
    assert len(broker.calls) == 1
    assert list(DeliveryAttempt.objects.filter(signal=sig).values_list("number", flat=True)) == [2]


def test_a_handed_order_waiting_for_its_retry_time_is_not_posted_early(strategy):
    sig = make_signal(strategy, "CL", 1)
    later = timezone.now() + timedelta(seconds=30)
    Signal.objects.filter(pk=sig.pk).update(next_attempt_at=later)
    broker = ScriptedBroker()
    assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker) is None
    sig.refresh_from_db()
    assert broker.calls == [] and (sig.state, sig.attempts, sig.next_attempt_at) == ("pending", 0, later)


def test_a_handed_order_of_a_paper_strategy_goes_to_the_paper_broker_never_to_the_webhook(strategy):
    strategy.mode = Strategy.Mode.PAPER
    strategy.save()
    sig = make_signal(strategy, "CL", 1)

    def webhook(url, payload, timeout):
        raise AssertionError("a paper order went to the webhook")

    assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=webhook) == "sent"
    assert PaperOrder.objects.get().signal_id == sig.pk
    assert list(DeliveryAttempt.objects.filter(signal=sig).values_list("outcome", "status_code")) == [("delivered", 200)]


class KeepAliveBroker:
    """A webhook answering 200 over HTTP/1.1 keep-alive (as TradersPost does); counts the connections it took."""

    def __init__(self):
        owner, self.connections, self.posts = self, [], []

        class Handler(BaseHTTPRequestHandler):
            protocol_version, disable_nagle_algorithm = "HTTP/1.1", True

            def setup(self):
                super().setup()
                owner.connections.append(self.client_address)

            def do_POST(self):
                owner.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/trading/webhook/keepalive"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_sender_posts_its_orders_over_one_kept_alive_connection(strategy, monkeypatch):
    """Handed orders and the sender's own passes over due orders share the webhook's session."""
    broker = KeepAliveBroker()
    monkeypatch.setenv("TRADERSPOST_IBS_A_WEBHOOK", broker.url)
    sessions = handoff.Sessions()
    try:
        first, second = make_signal(strategy, "CL", 1), make_signal(strategy, "GC", 1)
        for sig in (first, second):
            assert handoff.send_handed(handoff.order_message(sig), strategy, sessions=sessions) == "sent"
        third = make_signal(strategy, "HG", 1)
        assert send_pending_orders(strategy=strategy, sessions=sessions).sent == [third.key]
    finally:
        sessions.close()
        broker.stop()
    assert [p["extras"]["signal_id"] for p in broker.posts] == [first.key, second.key, third.key]
    assert len(broker.connections) == 1


def test_a_handed_order_waits_behind_an_earlier_unsent_order_of_its_instrument(strategy):
    first, second = make_signal(strategy, "CL", 2), make_signal(strategy, "CL", 1, "exit")
    other = make_signal(strategy, "GC", 1)
    broker = ScriptedBroker()
    assert handoff.send_handed(handoff.order_message(second), strategy, deliver=broker) is None
    assert broker.calls == []
    second.refresh_from_db()
    assert second.state == "pending" and second.attempts == 0 and not second.delivery_attempts.exists()
    assert handoff.send_handed(handoff.order_message(other), strategy, deliver=broker) == "sent"  # another instrument
    assert handoff.send_handed(handoff.order_message(first), strategy, deliver=broker) == "sent"
    assert handoff.send_handed(handoff.order_message(second), strategy, deliver=broker) == "sent"
    assert [p["extras"]["signal_id"] for _, p in broker.calls] == [other.key, first.key, second.key]


def test_a_claim_taken_back_after_its_post_started_is_failed_never_resent(strategy):
    sig = make_signal(strategy, "CL", 1)

    def frozen(url, payload, timeout):  # the sender dies during its POST: the recovery finds the attempt
        attempt = DeliveryAttempt.objects.get(signal=sig)
        assert attempt.outcome == Outcome.STARTED and Signal.objects.get(pk=sig.pk).state == "sending"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        handoff.send_handed(handoff.order_message(sig), strategy, deliver=frozen)
    assert recover_interrupted(strategy=strategy, mine=True)["ambiguous"] == [sig.key]
    broker = ScriptedBroker()
    assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker) is None
    assert broker.calls == [] and Signal.objects.get(pk=sig.pk).state == "failed"


def test_a_handed_entry_under_the_killswitch_is_settled_by_the_outbox_not_posted(strategy):
    sig = make_signal(strategy, "CL", 1)
    set_mode("entries", "test", actor="test")  # cancels unsent entries; this one is handed after the change
    Signal.objects.filter(pk=sig.pk).update(state="pending", risk_control="", state_reason="")
    broker = ScriptedBroker()
    assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker) == "blocked"
    assert broker.calls == []


def test_a_handed_order_held_by_the_rate_limit_stays_pending_for_later(strategy):
    class Full:
        def acquire(self, url):
            return 30.0

    sig = make_signal(strategy, "CL", 1)
    broker = ScriptedBroker()
    assert handoff.send_handed(handoff.order_message(sig), strategy, deliver=broker, limiter=Full()) == "pending"
    sig.refresh_from_db()
    assert broker.calls == [] and sig.state == "pending" and sig.next_attempt_at > timezone.now()
    assert not sig.delivery_attempts.exists()


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_the_sender_loop_sends_what_is_handed_on_its_pipe_and_stops_when_it_closes(strategy, monkeypatch):
    from django.db import connections

    sig = make_signal(strategy, "CL", 1)
    posted, passes = threading.Event(), []
    monkeypatch.setattr("trading.execution.traderspost.deliver",
                        lambda url, payload, timeout, session=None: posted.set() or Result("delivered", 200))
    # Its passes over due orders find nothing: what is sent, the pipe brought.
    monkeypatch.setattr("trading.execution.outbox.send_pending_orders", lambda **kw: passes.append(1) or OutboxReport())
    read, write = os.pipe()
    sent = []

    def loop():
        try:
            sent.append(run_sender(strategy, stdin=stdin, poll=60))
        finally:
            connections.close_all()

    with open(read, "rb") as stdin:
        thread = threading.Thread(target=loop)
        thread.start()
        os.write(write, json.dumps(handoff.order_message(sig), default=str).encode() + b"\n")
        assert posted.wait(30)
        os.close(write)
        thread.join(30)
    assert sent == [1] and Signal.objects.get(pk=sig.pk).state == "sent" and len(passes) <= 2


@pytest.mark.timeout(60)
def test_a_full_pipe_never_blocks_the_worker(strategy):
    """A sender frozen mid-POST reads nothing: the worker's writes are dropped, the orders stay pending rows."""

    class Stuck:
        def __init__(self):
            self.read, write = os.pipe()
            self.stdin = os.fdopen(write, "wb")
            os.set_blocking(write, False)

        def poll(self):
            return None

    sender = DetachedSender("ibs_a")
    sender.proc = Stuck()
    sig = make_signal(strategy, "CL", 1)
    for _ in range(200):  # far more than a pipe holds
        sender.send_now(strategy, [sig])
    kept = os.read(sender.proc.read, 1 << 20).split(b"\n")
    assert 0 < len(kept) - 1 < 200 and all(json.loads(line)["pk"] == sig.pk for line in kept[:-1])  # whole lines
    os.close(sender.proc.read)
