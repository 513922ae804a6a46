"""Small helpers for asset metadata shown in the Dagster UI."""


import dagster as dg
import pandas as pd


def md_table(df: pd.DataFrame, max_rows: int = 10, floatfmt: str = ".4g") -> dg.MetadataValue:
    if df is None or df.empty:
        return dg.MetadataValue.md("_(none)_")
    return dg.MetadataValue.md(df.head(max_rows).to_markdown(index=False, floatfmt=floatfmt))


def table_schema(df: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])
