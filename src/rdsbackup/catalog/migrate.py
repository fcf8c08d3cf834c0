"""``python -m rdsbackup.catalog.migrate``: migrate the catalog whose URL comes on
standard input (``Catalog.upgrade(apart=True)`` runs it)."""

from __future__ import annotations

import sys

from rdsbackup.catalog.db import Catalog, migrate


def main() -> None:
    url = sys.stdin.read().strip()
    catalog = Catalog(url)
    try:
        migrate(catalog.engine, url)
    finally:
        catalog.dispose()


if __name__ == "__main__":
    main()
