"""Discord messages always fit Discord's limits, many alerts coalesce into one, one POST is classified."""
import logging
import secrets
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import remember_secret
from trading.notify.discord import (
    COLOURS, Alert, build_message, coalesce, embed_text_length, emergency_message, entry_message, exit_message,
    fit, lifecycle_message, post, text_length, truncate, wait_hint)
from trading.sim.discord import DiscordStandIn, limit_problems, rate_limited

T0 = datetime(2024, 11, 4, 15, tzinfo=timezone.utc)


def assert_within_limits(message):
    """Checked here field by field, and by the stand-in's independent checker."""
    assert text_length(message.get("content") or "") <= 2000
    embeds = message.get("embeds") or []
    assert len(embeds) <= 10
    for e in embeds:
        assert text_length(e.get("title") or "") <= 256
        assert text_length(e.get("description") or "") <= 4096
        assert text_length((e.get("footer") or {}).get("text") or "") <= 2048
        assert text_length((e.get("author") or {}).get("name") or "") <= 256
        assert len(e.get("fields") or []) <= 25
        for f in e.get("fields") or []:
            assert 1 <= text_length(f["name"]) <= 256 and 1 <= text_length(f["value"]) <= 1024
    assert embed_text_length(message) <= 6000
    assert limit_problems(message) == []


# --- shapes ------------------------------------------------------------------------------------------
def test_exit_message_has_pnl_fields_colour_and_strategy():
    m = exit_message(strategy="IBS-A", symbol="MESZ4", side="long", pnl=-125.5, pnl_percent=-0.31,
                     exit_price=5012.25, duration=timedelta(hours=2, minutes=1), reason="ibs above 0.7", when=T0)
    (embed,) = m["embeds"]
    assert embed["author"]["name"] == "IBS-A" and embed["color"] == COLOURS["exit"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields == {"Symbol": "MESZ4", "Side": "long", "P&L $": "-$125.50", "P&L %": "-0.31%",
                      "Exit price": "5012.25", "Duration": "2h 1m", "Reason": "ibs above 0.7"}
    assert embed["timestamp"] == "2024-11-04T15:00:00+00:00"
    assert m["allowed_mentions"] == {"parse": []}  # an alert never pings @everyone


def test_entry_message_fields_and_each_kind_has_its_own_colour():
    m = entry_message(strategy="IBS-B", symbol="6CZ4", side="buy", price=0.7215, size=3)
    fields = {f["name"]: f["value"] for f in m["embeds"][0]["fields"]}
    assert fields == {"Symbol": "6CZ4", "Side": "buy", "Price": "0.7215", "Size": "3"}
    assert m["embeds"][0]["color"] == COLOURS["entry"]
    kinds = [lifecycle_message("startup", strategy="IBS-A", process="worker"),
             lifecycle_message("shutdown", strategy="IBS-A", process="worker"),
             emergency_message(strategy="IBS-A", title="Daily stop hit")]
    assert [k["embeds"][0]["color"] for k in kinds] == [COLOURS["startup"], COLOURS["shutdown"], COLOURS["emergency"]]
    assert len(set(COLOURS.values())) == len(COLOURS)
    with pytest.raises(ValueError):
        build_message("party", "x", strategy="IBS-A")


def test_truncate_marks_the_cut_and_never_splits_a_surrogate_pair():
    assert truncate("abcdef", 4) == "abc…" and truncate("abc", 4) == "abc"
    cut = truncate("😀" * 10, 6)  # each emoji is 2 UTF-16 units
    assert cut == "😀😀…" and text_length(cut) == 5


# --- limits, for any input -----------------------------------------------------------------------------
huge = st.text(min_size=0, max_size=9000) | st.just("x" * 20000) | st.just("😀" * 5000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kind=st.sampled_from(sorted(COLOURS)), title=huge, strategy=huge, description=huge,
       fields=st.lists(st.tuples(huge, huge), max_size=40), footer=huge, content=huge)
def test_every_built_message_is_within_discords_limits(kind, title, strategy, description, fields, footer, content):
    m = build_message(kind, title, strategy=strategy, description=description, fields=fields, footer=footer,
                      content=content)
    assert_within_limits(m)
    name = m["embeds"][0]["author"]["name"]
    assert strategy.startswith(name.rstrip("…")) or not strategy  # the strategy is named, cut at worst


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(embeds=st.lists(st.fixed_dictionaries({
    "title": huge, "description": huge, "author": st.fixed_dictionaries({"name": huge}),
    "footer": st.fixed_dictionaries({"text": huge}),
    "fields": st.lists(st.fixed_dictionaries({"name": huge, "value": huge}), max_size=30)}), max_size=14),
    content=huge)
def test_fit_brings_any_message_within_limits(embeds, content):
    assert_within_limits(fit({"content": content, "embeds": embeds}))


def test_fit_leaves_a_small_message_untouched():
    m = {"content": "hi", "embeds": [{"title": "t", "description": "d", "fields": [{"name": "a", "value": "b"}]}]}
    assert fit(m) == m


def test_fit_keeps_titles_and_drops_descriptions_first_over_the_total():
    embeds = [{"author": {"name": f"S{i}"}, "title": f"T{i}", "description": "d" * 4096} for i in range(10)]
    m = fit({"embeds": embeds})
    assert [e["title"] for e in m["embeds"]] == [f"T{i}" for i in range(10)]
    assert embed_text_length(m) == 6000 and m["embeds"][0]["description"].startswith("d")
    assert m["embeds"][1]["description"].endswith("…") and "description" not in m["embeds"][9]


# --- coalescing ---------------------------------------------------------------------------------------
def test_fifty_alerts_in_a_minute_become_one_summary_within_limits():
    alerts = [Alert("emergency" if i % 10 == 0 else "entry", f"Alert number {i} " + "z" * 300,
                    strategy=f"IBS-{'AB'[i % 2]}", body="b" * 5000, when=T0 + timedelta(seconds=i))
              for i in range(50)]
    m = coalesce(alerts, window="1 min")
    assert_within_limits(m)
    (embed,) = m["embeds"]
    assert embed["title"] == "50 alerts in 1 min"
    assert embed["color"] == COLOURS["emergency"]  # an emergency among them colours the summary
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["entry"] == "45" and fields["emergency"] == "5" and fields["Strategies"] == "IBS-A, IBS-B"
    assert "IBS-A" in embed["author"]["name"] and "IBS-B" in embed["author"]["name"]
    lines = embed["description"].splitlines()
    assert lines[0].startswith("• 15:00:00 [emergency] IBS-A: Alert number 0")
    assert lines[-1].startswith("… and ") and int(lines[-1].split()[2]) == 50 - (len(lines) - 1)


def test_a_few_alerts_are_all_listed():
    m = coalesce([Alert("info", "one", "IBS-A"), Alert("exit", "two", "IBS-A")])
    assert m["embeds"][0]["description"] == "• [info] IBS-A: one\n• [exit] IBS-A: two"
    assert m["embeds"][0]["color"] == COLOURS["summary"]
    with pytest.raises(ValueError):
        coalesce([])


# --- one POST ----------------------------------------------------------------------------------------
@pytest.fixture
def discord():
    with DiscordStandIn() as standin:
        yield standin


def webhook(standin) -> str:
    return remember_secret(f"{standin.url}/api/webhooks/{secrets.randbelow(10**12)}/{secrets.token_urlsafe(24)}")


def test_post_ok_and_the_message_arrives(discord):
    m = entry_message(strategy="IBS-A", symbol="MESZ4", side="buy", price=5012.25, size=1)
    result = post(webhook(discord), m, timeout=5)
    assert result.ok and result.status_code == 204 and wait_hint(result) == 0.0
    assert discord.messages() == [m]


def test_429_then_success_honours_discords_retry_after(discord):
    url = webhook(discord)
    discord.script(rate_limited(2.5))
    first = post(url, emergency_message(strategy="IBS-A", title="Feed gap"), timeout=5)
    assert (first.outcome, first.status_code, first.retry_after, first.is_global) == ("retryable", 429, 2.5, False)
    assert wait_hint(first) == 2.5
    second = post(url, emergency_message(strategy="IBS-A", title="Feed gap"), timeout=5)
    assert second.ok
    assert [e["status"] for e in discord.snapshot()] == [429, 204]


def test_real_bucket_rate_limit_then_success_after_waiting():
    clock = [100.0]
    with DiscordStandIn(rate_limit=(5, 2.0), clock=lambda: clock[0]) as standin:
        url = webhook(standin)
        m = lifecycle_message("startup", strategy="IBS-A", process="worker")
        results = [post(url, m, timeout=5) for _ in range(6)]
        assert [r.outcome for r in results] == ["delivered"] * 5 + ["retryable"]
        assert results[3].pause_for == 0.0 and results[4].pause_for == pytest.approx(2.0)  # remaining 0: hold off
        assert results[5].status_code == 429 and results[5].retry_after == pytest.approx(2.0)
        clock[0] += results[5].retry_after
        assert post(url, m, timeout=5).ok


def test_retry_after_from_header_when_body_has_none(discord):
    discord.script({"status": 429, "body": "slow down", "headers": {"Retry-After": "4"}})
    result = post(webhook(discord), build_message("info", "x", strategy="IBS-A"), timeout=5)
    assert (result.outcome, result.retry_after) == ("retryable", 4.0)


def test_server_error_and_timeout_are_retryable_and_bad_request_permanent(discord):
    url = webhook(discord)
    m = build_message("info", "x", strategy="IBS-A")
    discord.script(502, {"status": 204, "delay": 1.0})
    assert post(url, m, timeout=5).outcome == "retryable"
    timed_out = post(url, m, timeout=0.2)
    assert timed_out.outcome == "retryable" and "timeout" in timed_out.error
    bad = post(url, {"content": ""}, timeout=5)  # Discord: cannot send an empty message
    assert (bad.outcome, bad.status_code) == ("permanent", 400) and "empty message" in bad.body


def test_oversized_message_is_fitted_before_posting(discord):
    m = {"embeds": [{"title": "t" * 1000, "description": "d" * 9000, "fields": [{"name": "n", "value": "v" * 5000}]}]}
    assert limit_problems(m)  # the stand-in would refuse it as it is…
    assert post(webhook(discord), m, timeout=5).ok  # …but post() fits it first


def test_discord_url_never_in_logs_or_results(discord, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    url = webhook(discord)
    token = url.rsplit("/", 1)[1]
    discord.script(rate_limited(1.0), 500)
    results = [post(url, build_message("info", "x", strategy="IBS-A"), timeout=5) for _ in range(3)]
    text = caplog.text + "".join(repr(r) + r.body + r.error for r in results)
    assert token not in text and "/api/webhooks/" not in text
    assert "hook=" in caplog.text
