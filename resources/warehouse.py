"""The warehouse as a resource, and the IO manager that writes each asset to its table.

Both take ``duckdb_path`` (the embedded default) and ``warehouse_url``: a ``postgresql://`` URL,
bound through ``dg.EnvVar("OPTRADER_WAREHOUSE_URL")`` so that its password never shows in the UI,
selects the Postgres warehouse instead."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import dagster as dg
import pandas as pd

from optrader_pipelines.storage import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (DuckDB file, or Postgres when ``warehouse_url`` is set) holding every asset's
    table, the broker ledger and the audit log."""

    duckdb_path: str = "data/optrader.duckdb"
    warehouse_url: str = ""

    def get(self) -> Warehouse:
        return Warehouse(self.warehouse_url or self.duckdb_path)


# What this process wrote in the current run, per (warehouse, table, partition): a downstream step
# of the same run gets the frame it would read back without re-reading 200k rows from DuckDB.
# Only entries of the latest run are kept; other runs (or processes) read the warehouse.
_WRITTEN: dict[tuple[str, str, str], tuple[str, pd.DataFrame]] = {}
_WRITTEN_LOCK = threading.Lock()  # runs in threads of one process (tests, in-process executors)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores a partitioned asset's DataFrame in the table named after the asset, replacing that
    trade date's rows in one transaction (each row tagged with the run id); loads them back.

    Within one run, a frame this process has just written is handed to downstream steps from
    memory (a copy); a step in another run reads the warehouse."""

    duckdb_path: str = "data/optrader.duckdb"
    warehouse_url: str = ""

    def _warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_url or self.duckdb_path)

    def _day(self, context) -> dt.date:
        return dt.date.fromisoformat(context.asset_partition_key)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        wh = self._warehouse()
        n = wh.replace_day(table, self._day(context), obj, context.run_id)
        with _WRITTEN_LOCK:
            for key in [k for k, (run_id, _) in _WRITTEN.items() if run_id != context.run_id]:
                del _WRITTEN[key]
            _WRITTEN[self._key(table, context.asset_partition_key)] = (context.run_id, obj)
        where = dg.MetadataValue.path(wh.label) if wh.dialect == "duckdb" else dg.MetadataValue.text(wh.label)
        context.add_output_metadata({"warehouse_table": table, "warehouse_rows": n, "warehouse": where})

    def _key(self, table: str, partition: str) -> tuple[str, str, str]:
        target = self.warehouse_url or str(Path(self.duckdb_path).resolve())
        return (target, table, partition)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = context.asset_key.path[-1]
        with _WRITTEN_LOCK:
            written = _WRITTEN.get(self._key(table, context.asset_partition_key))
        if written is not None and written[0] == context.step_context.run_id:
            return written[1].copy()
        return self._warehouse().read_day(table, self._day(context))
