"""`make migrate | backup | restore | audit`: the warehouse the environment names
(OPTRADER_WAREHOUSE_URL for Postgres, else OPTRADER_DUCKDB_PATH), or --target.

  migrate            apply pending schema migrations and print the version
  backup DEST        export into the new folder DEST (DuckDB EXPORT DATABASE or pg_dump, plus a
                     manifest of row counts)
  restore SRC        load the backup in SRC into the (empty) warehouse and check every row count
  audit              print the audit log (--account, --limit)
"""

from __future__ import annotations

import argparse
import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="a DuckDB file or a postgresql:// URL (default: from the environment)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate")
    b = sub.add_parser("backup")
    b.add_argument("dest")
    r = sub.add_parser("restore")
    r.add_argument("src")
    a = sub.add_parser("audit")
    a.add_argument("--account")
    a.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)

    from optrader_pipelines import audit
    from optrader_pipelines.backup import BackupError, backup, restore
    from optrader_pipelines.config import ConfigError, Settings
    from optrader_pipelines.storage import Warehouse, WarehouseError, is_postgres_url, redact_url

    try:
        target = args.target or Settings.from_env().warehouse_target
        wh = Warehouse(target)
        if args.command == "migrate":
            ran = wh.migrate()
            print(f"{wh.label}: schema version {wh.schema_version()}"
                  + (f" (applied {', '.join(map(str, ran))})" if ran else " (up to date)"))
        elif args.command == "backup":
            manifest = backup(wh, args.dest)
            rows = sum(manifest["tables"].values())
            print(f"backed up {wh.label} (schema {manifest['schema_version']}): {len(manifest['tables'])} tables, "
                  f"{rows:,} rows -> {args.dest}")
        elif args.command == "restore":
            counts = restore(wh, args.src)
            print(f"restored {args.src} into {wh.label}: {len(counts)} tables, {sum(counts.values()):,} rows, "
                  "every row count equal to the backup's manifest")
        else:
            log = audit.history(wh, args.account).tail(args.limit)
            if log.empty:
                print("audit log is empty")
            for r in log.itertuples(index=False):
                print(f"{r.event_at}  {r.action:<22} {r.account:<18} {r.actor:<14} {r.subject or '':<28} "
                      f"run {r.run_id or '-'}  {r.details}")
    except (ConfigError, WarehouseError, BackupError, ValueError) as exc:
        text = str(exc)
        if args.target and is_postgres_url(args.target):
            text = text.replace(args.target, redact_url(args.target))
        print(f"error: {text}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
