"""The hub's batch path: `process_many` builds the bars, counters and rolls `process` would, with
numpy over each run of trades, falling back to the per-record path for the records whose effect
depends on what came just before them (a trade older than the clock's minute, the first trade of a
session, a root with no front contract yet). Mixed into trading.marketdata.hub.Hub, whose state it
reads and whose per-record methods it calls; tests/marketdata/test_hub_batch.py holds the two together.
"""
from __future__ import annotations

import databento_dbn as dbn
import numpy as np

from strategies.calendar import session_date_ns

NS = 1_000_000_000
MINUTE = 60 * NS
UNDEF_PRICE = dbn.UNDEF_PRICE
LAST_TIME = 2**63 - 1  # ns; a trade stamped later (UNDEF_TIMESTAMP, garbage) is dropped
TRADE = dbn.TradeMsg
# The fields of a DBN trade record the hub reads, at their offsets in its 48 bytes.
TRADE_FIELDS = np.dtype({"names": ["instrument_id", "ts_event", "price", "size"],
                         "formats": ["<u4", "<u8", "<i8", "<u4"], "offsets": [4, 8, 16, 24], "itemsize": 48})
TRADE_BYTES = TRADE_FIELDS.itemsize
RECORD_HEAD = np.dtype({"names": ["length", "rtype"], "formats": ["u1", "u1"], "offsets": [0, 1],
                        "itemsize": TRADE_BYTES})  # length in 4-byte words, record type
TRADE_RTYPE = int(dbn.RType.MBP_0)
ONE_BY_ONE = 16  # fewer trades than this in a run: the per-record path is cheaper than numpy's set-up


class TradeRow:
    """One trade of a bytes block, with the fields the per-record path reads (as a TradeMsg has them)."""
    __slots__ = ("instrument_id", "ts_event", "price", "size")

    def __init__(self, instrument_id: int, ts_event: int, price: int, size: int):
        self.instrument_id, self.ts_event, self.price, self.size = instrument_id, ts_event, price, size


class TradeRows:
    """A bytes block of trade records as a sequence of TradeRow, made only for the records the per-record path
    takes (a late trade, a session's first, a root without a front yet)."""

    def __init__(self, data: bytes):
        self.fields = np.frombuffer(data, TRADE_FIELDS)

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, i: int) -> TradeRow:
        row = self.fields[i]
        return TradeRow(int(row["instrument_id"]), int(row["ts_event"]), int(row["price"]), int(row["size"]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class BatchPath:
    @staticmethod
    def no_ids() -> np.ndarray:
        return np.zeros(0, dtype=np.uint32)

    def process_many(self, records) -> None:
        """Feed records in their arrival order: the same effect as `process` on each, in less time. An item
        may also be a bytes block of whole trade records (trading.marketdata.rawfeed), read with numpy."""
        if len(records) >= ONE_BY_ONE:
            data = b"".join(map(bytes, records))
            if len(data) == TRADE_BYTES * len(records):  # most likely trades only: no need to split
                head = np.frombuffer(data, RECORD_HEAD)
                if (head["length"] == TRADE_BYTES // 4).all() and (head["rtype"] == TRADE_RTYPE).all():
                    self._trades(TradeRows(data), data)
                    return
        run: list = []
        for rec in records:
            kind = type(rec)
            if kind is TRADE:
                run.append(rec)
                continue
            if run:
                self._trades(run)
                run = []
            if kind is bytes:
                self._trades(TradeRows(rec), rec)
            else:
                self.process(rec)
        if run:
            self._trades(run)

    def _trades(self, run: list, data: bytes | None = None) -> None:
        """A run of trade records (nothing else between them); `data`: their bytes, if joined already."""
        self.counters["records"] += len(run)
        if data is None:
            data = b"".join(map(bytes, run)) if len(run) >= ONE_BY_ONE else b""
        if len(data) != TRADE_BYTES * len(run) or self.holding:  # short run, an unexpected layout, or a
            # contract held after its roll (its trades are built as well, rare enough for the plain path)
            for rec in run:
                self._trade(rec)
            return
        fields = np.frombuffer(data, TRADE_FIELDS)
        stamps = fields["ts_event"]
        inverse = self._slots(fields["instrument_id"])  # record → slot of its instrument id
        seen = np.flatnonzero(np.bincount(inverse, minlength=len(self._ids)))
        routes: list = [None] * len(self._ids)
        for u in seen.tolist():
            i = int(self._ids[u])
            routes[u] = self._routes.get(i) or self._route(i)
        price = fields["price"]
        # Per instrument: 0 unmapped, 1 spread, 2 not a configured root, 3 a root's outright.
        kind = np.array([0 if r is None else 1 if r[2] == "spread" else 2 if r[1] is None else 3 for r in routes])
        per_record = kind[inverse]
        good = (per_record == 3) & (price != UNDEF_PRICE) & (price > 0) & (stamps <= LAST_TIME)
        if not good.all():
            self.counters["spreads_dropped"] += int(np.count_nonzero(per_record == 1))
            for i in np.flatnonzero(~good & (per_record != 1)).tolist():
                self._trade(run[i])  # unmapped, unknown, a bad price or time: counted and logged there
        rows = np.flatnonzero(good)
        if not len(rows):
            return
        if any(not routes[u][1].front.active for u in seen.tolist() if kind[u] == 3):
            for i in rows.tolist():  # a root without a front contract yet: it is chosen record by record
                self._trade(run[i])
            return
        self._good_trades(run, rows, stamps[rows].astype(np.int64), inverse[rows], price[rows],
                          fields["size"][rows], routes)

    def _slots(self, ids: np.ndarray) -> np.ndarray:
        """Each instrument id's slot in `self._ids` (the sorted ids seen so far), without sorting the batch."""
        known = self._ids
        if len(known):
            at = np.searchsorted(known, ids)
            np.minimum(at, len(known) - 1, out=at)
            if (known[at] == ids).all():
                return at
        self._ids = np.union1d(known, ids)
        return np.searchsorted(self._ids, ids)

    def _good_trades(self, run, rows, ts, inst, price, size, routes) -> None:
        """Trades of configured roots with a valid price. Records older than the clock's minute and
        each root's first trade of a session go one by one; the spans between them go in bulk."""
        minute = ts // MINUTE
        before = np.maximum.accumulate(np.concatenate(([self.clock // MINUTE], minute)))[:-1]
        late = np.flatnonzero(minute < before).tolist()
        late.append(len(ts))
        names = list(self.roots)
        number = {name: k for k, name in enumerate(names)}
        root = np.array([number[r[1].root] if r and r[1] is not None else -1 for r in routes])[inst]
        on_time = np.ones(len(ts), dtype=bool)
        on_time[late[:-1]] = False

        def next_session_start(k: int, after: int) -> int:
            """Where root k's next trade at or past its session's end is (len(ts): none)."""
            end = self.roots[names[k]].session_end_ns
            hits = np.flatnonzero((root[after:] == k) & (ts[after:] >= end) & on_time[after:])
            return after + int(hits[0]) if len(hits) else len(ts)

        starts = {k: next_session_start(k, 0) for k in set(root.tolist())}
        pos, li = 0, 0
        while pos < len(ts):
            while late[li] < pos:
                li += 1
            stop = min(late[li], min(starts.values()))
            if stop > pos:
                self._bulk(ts[pos:stop], inst[pos:stop], root[pos:stop], price[pos:stop], size[pos:stop], routes,
                           names)
            if stop == len(ts):
                return
            k = int(root[stop])
            session_end = self.roots[names[k]].session_end_ns
            self._trade(run[int(rows[stop])])
            if stop == starts[k] or self.roots[names[k]].session_end_ns != session_end:
                starts[k] = next_session_start(k, stop + 1)
            pos = stop + 1

    def _bulk(self, ts, inst, root, price, size, routes, names) -> None:
        """A span of on-time trades (minutes never going back) within one session of every root."""
        minute = ts - ts % MINUTE
        # Volume per contract, the roll rule's input. The per-record path commits it minute by
        # minute; here it is committed at once (the same session, so the same totals at its close).
        volume = np.bincount(inst, weights=size, minlength=len(routes))
        day = session_date_ns(int(minute[-1]))
        front = np.zeros(len(routes), dtype=bool)
        for u in np.flatnonzero(np.bincount(inst, minlength=len(routes))).tolist():
            raw, state, _ = routes[u]
            self._commit_volume(state)
            state.front.observe(raw, int(volume[u]), day)
            front[u] = raw == state.front.active
        for k in set(root.tolist()):
            state = self.roots[names[k]]
            state.minute_of_volume = max(state.minute_of_volume, int(minute[-1]))
        is_front = front[inst]
        fronts = int(np.count_nonzero(is_front))
        self.counters["back_month_dropped"] += len(ts) - fronts
        self.counters["trades"] += fronts
        # The clock: minute by minute, each minute's sweep before its trades are added.
        first_of_minute = np.concatenate(([0], np.flatnonzero(minute[1:] != minute[:-1]) + 1))
        newest_of_minute = np.maximum.reduceat(ts, first_of_minute).tolist()
        first_of_minute = first_of_minute.tolist()
        # Front trades per root and minute (arrival order kept, no sort): first/high/low/last price,
        # volume, count, newest time; then all roots' groups in the order their first trades came.
        parts = []
        for k in set(root[is_front].tolist()):
            at = np.flatnonzero(is_front & (root == k))
            m, p = minute[at], price[at]
            group = np.concatenate(([0], np.flatnonzero(m[1:] != m[:-1]) + 1))
            ends = np.append(group[1:], len(at)) - 1
            parts.append((at[group], m[group], inst[at[group]], p[group], np.maximum.reduceat(p, group),
                          np.minimum.reduceat(p, group), p[ends], np.add.reduceat(size[at].astype(np.int64), group),
                          ends - group + 1, np.maximum.reduceat(ts[at], group)))
        if parts:
            cols = [np.concatenate(c) for c in zip(*parts)]
            order = np.argsort(cols[0], kind="stable")
            cols = [c[order] for c in cols]
            for i in (3, 4, 5, 6):
                cols[i] = cols[i] / 1e9
            cols = [c.tolist() for c in cols]
        else:
            cols = [[]] * 10
        m = 0
        for first, mnt, u, o, h, lo, c, v, n, newest in zip(*cols):
            while m < len(first_of_minute) and first_of_minute[m] <= first:
                if newest_of_minute[m] > self.clock:
                    self.advance(newest_of_minute[m])
                m += 1
            raw, state, _ = routes[u]
            for bar in state.minutes.push_minute(mnt, newest, o, h, lo, c, v, n, raw):
                self._minute_done(state, bar)
        for t in newest_of_minute[m:]:
            if t > self.clock:
                self.advance(t)
