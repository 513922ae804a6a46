"""The DuckDB warehouse as a resource, and the IO manager that writes each asset to its table."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd

from optrader_pipelines.storage import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """DuckDB file holding every asset's table and the paper broker's ledger."""

    duckdb_path: str = "data/optrader.duckdb"

    def get(self) -> Warehouse:
        return Warehouse(self.duckdb_path)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Stores a partitioned asset's DataFrame in the table named after the asset, replacing that
    trade date's rows in one transaction (each row tagged with the run id); loads them back."""

    duckdb_path: str = "data/optrader.duckdb"

    def _day(self, context) -> dt.date:
        return dt.date.fromisoformat(context.asset_partition_key)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        table = context.asset_key.path[-1]
        n = Warehouse(self.duckdb_path).replace_day(table, self._day(context), obj, context.run_id)
        context.add_output_metadata({"warehouse_table": table, "warehouse_rows": n,
                                     "warehouse_path": dg.MetadataValue.path(self.duckdb_path)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        table = context.asset_key.path[-1]
        return Warehouse(self.duckdb_path).read_day(table, self._day(context))
