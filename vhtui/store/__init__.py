"""SQLite store: the only code that writes SQL. Many processes share it (WAL, short transactions)."""

from vhtui.store.db import Database, open_database

__all__ = ["Database", "open_database"]
