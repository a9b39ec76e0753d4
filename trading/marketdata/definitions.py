"""Instrument definitions (Databento's `definition` schema) as contracts, and what each instrument id is.

A definition gives an instrument's raw symbol, id, product (`asset`), expiration, activation and
class: an outright future or a spread is told by its class, never by the shape of its symbol.
Where no definition has arrived yet, the symbol mapping's parent names the root and a '-' in the
raw symbol marks a spread (Globex names calendar spreads 'CLZ6-CLF7').
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import databento_dbn as dbn

NS = 1_000_000_000
UNDEF_TIMESTAMP = 2**64 - 1
OUTRIGHT = str(dbn.InstrumentClass.FUTURE.value)  # 'F'


def _time(ns: int) -> int:
    return 0 if ns in (UNDEF_TIMESTAMP, 2**63 - 1) else int(ns)


@dataclass(frozen=True)
class ContractDef:
    raw_symbol: str
    instrument_id: int
    root: str  # the definition's asset, e.g. 'CL'
    instrument_class: str  # 'F' future (an outright), 'S' future spread, …
    expiration_ns: int = 0  # 0: not given
    activation_ns: int = 0

    @property
    def outright(self) -> bool:
        return self.instrument_class == OUTRIGHT

    @property
    def expiration(self) -> datetime | None:
        return datetime.fromtimestamp(self.expiration_ns / NS, timezone.utc) if self.expiration_ns else None

    @property
    def activation(self) -> datetime | None:
        return datetime.fromtimestamp(self.activation_ns / NS, timezone.utc) if self.activation_ns else None

    @classmethod
    def from_record(cls, rec) -> "ContractDef":
        kind = rec.instrument_class
        return cls(rec.raw_symbol, int(rec.instrument_id), rec.asset, str(getattr(kind, "value", kind) or ""),
                   _time(rec.expiration), _time(rec.activation))


def companion_path(path: Path) -> Path | None:
    """The definitions beside a data file: `NAME.definition.dbn[.zst]` for `NAME.SCHEMA.dbn[.zst]`."""
    name = path.name
    for suffix in (".dbn.zst", ".dbn"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            base = stem.rsplit(".", 1)[0] if "." in stem else stem
            candidate = path.with_name(f"{base}.definition{suffix}")
            return candidate if candidate.exists() and candidate != path else None
    return None


def read_definitions(paths) -> dict[int, ContractDef]:
    """Instrument id → its latest definition, from DBN files of the definition schema."""
    from trading.marketdata.dbnfile import read_records

    out: dict[int, ContractDef] = {}
    for path in paths:
        reading = read_records(Path(path))
        for rec in sorted((r for r in reading.records if isinstance(r, dbn.InstrumentDefMsg)), key=lambda r: r.ts_event):
            out[int(rec.instrument_id)] = ContractDef.from_record(rec)
    return out


class Directory:
    """What each instrument id is: raw symbol, root and kind ('outright' or 'spread')."""

    def __init__(self):
        self.symbols: dict[int, str] = {}
        self.parents: dict[int, str] = {}  # from symbol mappings: 'CL.FUT' → 'CL'
        self.definitions: dict[int, ContractDef] = {}

    def map(self, rec) -> None:
        self.symbols[rec.instrument_id] = rec.stype_out_symbol
        parent = rec.stype_in_symbol or ""
        if parent.endswith(".FUT"):
            self.parents[rec.instrument_id] = parent[: -len(".FUT")]

    def define(self, contract: ContractDef) -> None:
        self.definitions[contract.instrument_id] = contract
        self.symbols[contract.instrument_id] = contract.raw_symbol

    def describe(self, instrument_id: int) -> tuple[str, str, str] | None:
        """(raw symbol, root, kind), or None when nothing names the instrument yet."""
        contract = self.definitions.get(instrument_id)
        if contract is not None:
            return contract.raw_symbol, contract.root, "outright" if contract.outright else "spread"
        raw = self.symbols.get(instrument_id)
        if raw is None:
            return None
        return raw, self.parents.get(instrument_id, ""), "spread" if "-" in raw else "outright"
