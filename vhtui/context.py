"""What every command needs: where state lives, the open store, the user's settings."""

from __future__ import annotations

from dataclasses import dataclass

from vhtui.home import Home, current_home
from vhtui.settings import Settings, load_settings
from vhtui.store import Database, open_database


@dataclass
class Context:
    home: Home
    db: Database
    settings: Settings

    @classmethod
    def open(cls) -> Context:
        home = current_home().ensure()
        return cls(home=home, db=open_database(home.database), settings=load_settings(home))

    def with_new_connection(self) -> Context:
        """The same state with a connection of its own, for a worker thread."""
        return Context(home=self.home, db=open_database(self.home.database), settings=self.settings)
