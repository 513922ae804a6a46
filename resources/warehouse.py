"""The DuckDB warehouse as a resource, and the IO manager that writes each asset to its table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd

from optrader_pipelines.storage import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """DuckDB file holding every asset's table and the paper broker's ledger."""

    duckdb_path: str = "data/optrader.duckdb"

    def get(self) -> Warehouse:
        return Warehouse(self.duckdb_path)


# What this process wrote in the current run, per (warehouse, table, partition): a downstream step
# of the same run gets the frame it would read back without re-reading 200k rows from DuckDB.
# Only entries of the latest run are kept; other runs (or processes) read the warehouse.
_WRITTEN: dict[tuple[str, str, str], tuple[str, pd.DataFrame]] = {}


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores a partitioned asset's DataFrame in the table named after the asset, replacing that
    trade date's rows in one transaction (each row tagged with the run id); loads them back.

    Within one run, a frame this process has just written is handed to downstream steps from
    memory (a copy); a step in another run reads the warehouse."""

    duckdb_path: str = "data/optrader.duckdb"

    def _day(self, context) -> dt.date:
        return dt.date.fromisoformat(context.asset_partition_key)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        n = Warehouse(self.duckdb_path).replace_day(table, self._day(context), obj, context.run_id)
        for key in [k for k, (run_id, _) in _WRITTEN.items() if run_id != context.run_id]:
            del _WRITTEN[key]
        _WRITTEN[self._key(table, context.asset_partition_key)] = (context.run_id, obj)
        context.add_output_metadata({"warehouse_table": table, "warehouse_rows": n,
                                     "warehouse_path": dg.MetadataValue.path(self.duckdb_path)})

    def _key(self, table: str, partition: str) -> tuple[str, str, str]:
        return (str(Path(self.duckdb_path).resolve()), table, partition)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = context.asset_key.path[-1]
        written = _WRITTEN.get(self._key(table, context.asset_partition_key))
        if written is not None and written[0] == context.step_context.run_id:
            return written[1].copy()
        return Warehouse(self.duckdb_path).read_day(table, self._day(context))
