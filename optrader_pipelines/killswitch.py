"""The kill switch: a persisted, audited stop on opening orders.

Its state is the latest row of the append-only ``kill_switch_events`` table for the account (no
row: released). Engaging it is automatic (a risk breach) or manual; releasing it is always an
explicit action with who released it and why. While engaged, ``safety_checked_orders`` rejects
every opening order with the reason; closing orders (position management) still go through.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from . import audit
from .storage import Warehouse


@dataclass(frozen=True)
class KillSwitchState:
    account: str
    engaged: bool
    reason: str
    actor: str
    at: pd.Timestamp | None

    def describe(self) -> str:
        if not self.engaged:
            return "kill switch released" + (f" by {self.actor} at {self.at} ({self.reason})" if self.at is not None else "")
        return f"kill switch engaged by {self.actor} at {self.at}: {self.reason}"


class KillSwitch:
    def __init__(self, warehouse: Warehouse, account: str):
        self.wh = warehouse
        self.account = account
        self.wh.ensure_ledger()

    def state(self) -> KillSwitchState:
        df = self.wh.query("SELECT * FROM kill_switch_events WHERE account = ? ORDER BY event_at DESC, event_id DESC LIMIT 1",
                           [self.account])
        if df.empty:
            return KillSwitchState(self.account, False, "never engaged", "", None)
        r = df.iloc[0]
        return KillSwitchState(self.account, bool(r["engaged"]), r["reason"], r["actor"], pd.Timestamp(r["event_at"]))

    @property
    def engaged(self) -> bool:
        return self.state().engaged

    def _record(self, engaged: bool, reason: str, actor: str, run_id: str, key: str | None,
                at: pd.Timestamp | None = None) -> bool:
        if not actor or not actor.strip():
            raise ValueError("a kill switch action needs an actor (who engaged or released it)")
        if not reason or not reason.strip():
            raise ValueError("a kill switch action needs a reason")
        at = at if at is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
        last = self.state().at
        if last is not None and at <= last:  # the latest event is the state: keep the order strict
            at = last + pd.Timedelta(microseconds=1)
        raw = key or f"{self.account}|{engaged}|{actor}|{at.isoformat()}|{reason}"
        event_id = "ks-" + hashlib.sha256(raw.encode()).hexdigest()[:20]
        before = self.wh.count("kill_switch_events")
        self.wh.execute_many([("INSERT INTO kill_switch_events VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                               [event_id, self.account, engaged, reason, actor, at, run_id])] + audit.entry(
            "kill_switch_engaged" if engaged else "kill_switch_released", self.account, event_id,
            {"reason": reason}, run_id, actor, key=f"kill_switch|{event_id}", at=at))
        return self.wh.count("kill_switch_events") > before

    def engage(self, reason: str, actor: str, run_id: str = "", key: str | None = None,
               at: pd.Timestamp | None = None) -> bool:
        """Engage (a no-op if already engaged). ``key`` makes a repeated trigger, such as the same
        breach seen on two sensor ticks, write one event. True when an event was written."""
        if self.engaged:
            return False
        return self._record(True, reason, actor, run_id, key, at)

    def release(self, reason: str, actor: str, run_id: str = "") -> bool:
        """Release: an explicit action, recorded with who and why. True when it was engaged."""
        if not self.engaged:
            return False
        return self._record(False, reason, actor, run_id, None)

    def history(self) -> pd.DataFrame:
        return self.wh.query("SELECT * FROM kill_switch_events WHERE account = ? ORDER BY event_at, event_id", [self.account])
