"""Contracts in the database: instrument definitions kept as Contract rows (outrights of the
configured roots only), and read back as each root's front-month state when the hub starts."""
from __future__ import annotations

import logging
from datetime import date, datetime, timezone

from trading.marketdata.definitions import NS, ContractDef
from trading.marketdata.roll import FrontMonth
from trading.models import Contract, Instrument

log = logging.getLogger(__name__)


def _when(ns: int) -> datetime | None:
    return datetime.fromtimestamp(ns / NS, timezone.utc) if ns else None


def save_contracts(contracts) -> int:
    """Create or update the Contract row of each outright of a known root; returns how many rows changed."""
    wanted = {}
    for c in contracts:
        if c.outright:
            wanted[(c.root, c.raw_symbol)] = c
    if not wanted:
        return 0
    instruments = {i.root: i for i in Instrument.objects.filter(root__in={root for root, _ in wanted})}
    existing = {(row.instrument.root, row.raw_symbol): row for row in
                Contract.objects.filter(instrument__in=instruments.values()).select_related("instrument")}
    changed = 0
    for (root, raw), c in wanted.items():
        instrument = instruments.get(root)
        if instrument is None:
            continue
        values = dict(databento_id=c.instrument_id, instrument_class=c.instrument_class,
                      expiration=_when(c.expiration_ns), activation=_when(c.activation_ns))
        row = existing.get((root, raw))
        if row is None:
            Contract.objects.create(instrument=instrument, raw_symbol=raw, **values)
        elif any(getattr(row, k) != v for k, v in values.items()):
            Contract.objects.filter(pk=row.pk).update(**values)
        else:
            continue
        changed += 1
    return changed


def save_session_volumes(root: str, session: date, volume: dict[str, int]) -> None:
    """Each contract's volume in the last session of data (warmup), what a first front is chosen by."""
    rows = Contract.objects.filter(instrument__root=root)
    rows.exclude(raw_symbol__in=list(volume)).update(last_session=session, last_session_volume=0)
    for raw, size in volume.items():
        rows.filter(raw_symbol=raw).update(last_session=session, last_session_volume=int(size))


def _ns(when: datetime | None) -> int:
    return round(when.timestamp() * 1_000_000) * 1000 if when else 0


def contract_defs(instrument: Instrument) -> list[ContractDef]:
    return [ContractDef(row.raw_symbol, row.databento_id, instrument.root, row.instrument_class,
                        _ns(row.expiration), _ns(row.activation)) for row in instrument.contracts.all()]


def front_state(instrument: Instrument) -> FrontMonth:
    """The hub's front-month state of a root: its rule, active contract, stored contracts, and the
    volumes of the last session of data (for a first choice when no contract is active)."""
    rows = list(instrument.contracts.all())
    last = max((r.last_session for r in rows if r.last_session), default=None)
    volume = {r.raw_symbol: r.last_session_volume for r in rows if last and r.last_session == last}
    return FrontMonth(instrument.root, instrument.roll_rule, instrument.roll_days_before_expiry,
                      instrument.active_contract, contracts=contract_defs(instrument), last_volume=volume)
