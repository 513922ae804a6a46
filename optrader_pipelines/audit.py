"""The append-only audit log of trading actions (table ``audit_log``, migration 3).

One row per action, with its time, actor, account, subject (the order or event it concerns), the
Dagster run id and the details as JSON:

* ``order_placed`` (paper fill or no fill, tastytrade dry run or routed), ``order_filled`` (a
  routed tastytrade order reported filled), ``order_rejected`` (by the broker, or by the safety
  checks before reaching it), ``order_cancelled``, ``order_replaced``;
* ``kill_switch_engaged``, ``kill_switch_released``;
* ``config_changed``: the trading configuration a run sees differs from the last one recorded.

Rows are written in the same transaction as the action they record, with an id derived from the
action (an order's id, a kill-switch event's id), so a re-run writes nothing twice. Nothing
updates or deletes them (Postgres enforces it with a trigger, the DuckDB warehouse by refusing
such statements). Backtest accounts (``backtest:...``) replay simulated history and are not
audited.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from .storage import Warehouse

ACTIONS = ("order_placed", "order_filled", "order_rejected", "order_cancelled", "order_replaced",
           "kill_switch_engaged", "kill_switch_released", "config_changed")
SYSTEM_ACTOR = "optrader"
INSERT = "INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"


def audited(account: str) -> bool:
    return not account.startswith("backtest:")


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def entry(action: str, account: str, subject: str | None, details: dict, run_id: str = "", actor: str = SYSTEM_ACTOR,
          key: str | None = None, at: pd.Timestamp | None = None) -> list[tuple[str, list]]:
    """The statement recording one action (empty for a backtest account), to be run in the same
    transaction as the action. ``key`` (default: action and subject) makes the row's id: the same
    action recorded twice is one row."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r} (one of {', '.join(ACTIONS)})")
    if not actor or not str(actor).strip():
        raise ValueError("an audited action needs an actor")
    if not audited(account):
        return []
    at = at if at is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    raw = key or f"{action}|{account}|{subject}"
    audit_id = "audit-" + hashlib.sha256(raw.encode()).hexdigest()[:24]
    return [(INSERT, [audit_id, at, action, str(actor), account, subject, run_id or None, _json(details)])]


def record(wh: Warehouse, *args, **kwargs) -> None:
    wh.ensure_ledger()
    stmts = entry(*args, **kwargs)
    if stmts:
        wh.execute_many(stmts)


def order_entry(account: str, order_id: str, status: str, details: dict, run_id: str = "",
                actor: str = SYSTEM_ACTOR, action: str | None = None) -> list[tuple[str, list]]:
    """An order's action from its status: ``rejected`` -> order_rejected, ``cancelled`` ->
    order_cancelled, ``filled`` on a routed order -> order_filled, otherwise order_placed."""
    action = action or {"rejected": "order_rejected", "cancelled": "order_cancelled"}.get(status, "order_placed")
    return entry(action, account, order_id, dict(details, status=status), run_id, actor)


def record_config(wh: Warehouse, account: str, config: dict, run_id: str = "", actor: str = SYSTEM_ACTOR) -> bool:
    """Record ``config`` (non-secret trading settings) when it differs from the account's last
    recorded configuration; True when a row was written."""
    if not audited(account):
        return False
    wh.ensure_ledger()
    last = wh.query("SELECT audit_id, details FROM audit_log WHERE account = ? AND action = 'config_changed' "
                    "ORDER BY event_at DESC, audit_id DESC LIMIT 1", [account])
    previous = json.loads(last["details"].iloc[0])["config"] if len(last) else None
    current = json.loads(_json(config))
    if previous == current:
        return False
    changed = sorted(k for k in set(current) | set(previous or {}) if (previous or {}).get(k) != current.get(k))
    key = f"config_changed|{account}|{_json(current)}|after:{last['audit_id'].iloc[0] if len(last) else ''}"
    record(wh, "config_changed", account, "configuration",
           {"config": current, "previous": previous, "changed": changed}, run_id, actor, key=key)
    return True


def history(wh: Warehouse, account: str | None = None) -> pd.DataFrame:
    wh.ensure_ledger()
    if account is None:
        return wh.query("SELECT * FROM audit_log ORDER BY event_at, audit_id")
    return wh.query("SELECT * FROM audit_log WHERE account = ? ORDER BY event_at, audit_id", [account])
