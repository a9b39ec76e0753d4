"""One delivery core for everything PineOps sends out: orders to TradersPost and alerts to Discord.

- `claims`: a row is claimed by its holder (host:pid:start) before its POST; who may take a claim back.
- `outcomes`: what one POST came to, as the attempt log records it.
- `retry`: backoff, and a server's Retry-After read as a bounded number of seconds.
- `webhooks`: a webhook URL is a secret: its fingerprint stands in for it, and HTTP client logs are redacted.
- `alerts`: queueing an alert (a row of the notification outbox); trading code never posts itself.

Two policies stand on it: trading.execution.outbox (an order that may have reached the broker is never
sent again) and trading.notify.delivery (an alert whose sender died is sent again: at least once).
"""
