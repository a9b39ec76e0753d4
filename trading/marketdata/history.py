"""Databento's historical API for warmup: what a download costs, downloads kept in a cache, retries
where Databento says to try again, and errors that say what to do.

One request per root and schema (`ohlcv-1h` and `definition` of `ROOT.FUT`: every contract of the
parent), cached as `{ROOT}.{schema}.{start}-{end}.dbn.zst`. A cache file is there whole or not at
all: the download goes to a file beside it, is decoded end to end, then renamed; a download cut
off midway leaves nothing. So a second run over the same span downloads nothing.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

from trading.marketdata.dbnfile import read_records

log = logging.getLogger(__name__)
DATASET = "GLBX.MDP3"
SCHEMAS = ("definition", "ohlcv-1h")
MAX_WAIT = 60.0  # s: the longest pause before a retry, whatever Retry-After says


class HistoryError(Exception):
    """A download that cannot complete; the message says why and what to do."""


@dataclass(frozen=True)
class Download:
    root: str
    schema: str
    start: datetime
    end: datetime
    path: Path

    @property
    def cached(self) -> bool:
        return self.path.exists()

    def describe(self) -> str:
        return f"{self.schema} of {self.root}.FUT from {self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}"


def plan(roots, start: datetime, end: datetime, cache: Path) -> list[Download]:
    return [Download(root, schema, start, end, cache / f"{root}.{schema}.{start:%Y%m%d}-{end:%Y%m%d}.dbn.zst")
            for root in roots for schema in SCHEMAS]


def client(key: str, gateway: str = ""):
    """The official client; `gateway` (https://host:port) for a local stand-in, empty for Databento."""
    import databento as db

    return db.Historical(key, gateway=gateway) if gateway else db.Historical(key)


def _call(what: str, fn, *, retries: int, sleep=time.sleep):
    """Run one request, retrying 429 (after Retry-After) and 5xx (backing off) up to `retries` times."""
    import databento as db

    attempt = 0
    while True:
        try:
            return fn()
        except db.BentoClientError as exc:
            status, detail = exc.http_status, _one_line(exc.message)
            if status == 429 and attempt < retries:
                wait = _retry_after(exc, attempt)
                log.warning("databento rate limit on %s; retrying in %.1fs", what, wait)
            elif status in (401, 403):
                raise HistoryError(f"Databento refused the API key ({status}): {detail} — check DATABENTO_API_KEY "
                                   f"and the key's access to {DATASET}") from None
            elif status == 429:
                raise HistoryError(f"Databento kept refusing {what} for its rate limit (429) after {retries} "
                                   f"retries: wait a minute and run warmup again") from None
            else:
                raise HistoryError(f"Databento cannot serve {what} ({status}): {detail}") from None
        except requests.ConnectionError as exc:
            raise HistoryError(f"cannot reach Databento's historical API for {what} ({exc.__class__.__name__}): "
                               f"check the network (or DATABENTO_HISTORICAL_GATEWAY)") from None
        except db.BentoServerError as exc:
            if attempt >= retries:
                tries = f"{retries + 1} attempt" + ("s" if retries else "")
                raise HistoryError(f"Databento failed {what} ({exc.http_status}) on {tries}: "
                                   f"{_one_line(exc.message) or 'server error'} — try again later") from None
            wait = _retry_after(exc, attempt)
            log.warning("databento server error %s on %s; retrying in %.1fs", exc.http_status, what, wait)
        attempt += 1
        sleep(wait)


def _one_line(message) -> str:
    return " ".join(str(message or "").split())  # Databento's detail comes as "case\nmessage"


def _retry_after(exc, attempt: int) -> float:
    headers = getattr(exc, "headers", None) or {}
    try:
        return min(MAX_WAIT, max(0.0, float(headers.get("Retry-After"))))
    except (TypeError, ValueError):
        return min(MAX_WAIT, 2.0 ** attempt)


def cost(hist, downloads: list[Download], *, retries: int = 3) -> float:
    """Databento's price in US$ of the downloads not cached yet."""
    total = 0.0
    for d in downloads:
        if not d.cached:
            total += float(_call(f"the cost of {d.describe()}", lambda d=d: hist.metadata.get_cost(
                dataset=DATASET, start=d.start, end=d.end, symbols=[f"{d.root}.FUT"], schema=d.schema,
                stype_in="parent"), retries=retries))
    return total


def fetch(hist, d: Download, *, retries: int = 5, sleep=time.sleep) -> bool:
    """Download `d` into the cache unless it is there; True when it was downloaded."""
    import databento as db

    if d.cached:
        return False
    d.path.parent.mkdir(parents=True, exist_ok=True)
    part = d.path.with_name(d.path.name.replace(".dbn.zst", ".part.dbn.zst"))  # read_records knows it by .zst

    def once():
        part.unlink(missing_ok=True)
        return hist.timeseries.get_range(dataset=DATASET, start=d.start, end=d.end, symbols=[f"{d.root}.FUT"],
                                         schema=d.schema, stype_in="parent", path=part)
    try:
        try:
            _call(d.describe(), once, retries=retries, sleep=sleep)
        except (db.BentoError, OSError, ValueError) as exc:
            if isinstance(exc, (db.BentoClientError, db.BentoServerError)):
                raise
            raise HistoryError(f"the download of {d.describe()} was cut off ({exc.__class__.__name__}: {exc}); "
                               f"nothing was cached: run warmup again") from None
        reading = read_records(part)
        if not reading.ok or reading.schema != d.schema:
            raise HistoryError(f"the download of {d.describe()} is incomplete or corrupt ({dict(reading.problems)}); "
                               f"nothing was cached: run warmup again")
        part.replace(d.path)
    finally:
        part.unlink(missing_ok=True)
    log.info("warmup downloaded root=%s schema=%s path=%s", d.root, d.schema, d.path.name)
    return True
