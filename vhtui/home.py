"""Where vhtui keeps its state: `$VHTUI_HOME`, by default `~/.local/share/vhtui`.

Every path under it is named here, so nothing else builds one by hand. Finding the home creates
nothing; `ensure()` creates the root when something is about to be stored.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vhtui.errors import VhtuiError


@dataclass(frozen=True)
class Home:
    root: Path

    def ensure(self) -> Home:
        """Create the home, private to its user (0700): it holds every parameter, log and output.
        A home that others can read is made private, once, with a note."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.root.stat().st_mode & 0o777
            if not self.root.is_dir():
                raise NotADirectoryError(20, "not a folder")
        except OSError as exc:
            raise VhtuiError(f"cannot keep vhtui's state in {self.root} ({exc.strerror}): point VHTUI_HOME at a "
                             "folder you can write") from None
        if mode & 0o077:
            os.chmod(self.root, 0o700)
            print(f"vhtui: note: made {self.root} private to you (it was {mode:o}): it holds parameters, logs "
                  "and outputs", file=sys.stderr)
        self.valid_configs.mkdir(parents=True, exist_ok=True)
        return self

    # -- the store and its settings -----------------------------------------------------------
    @property
    def database(self) -> Path:
        return self.root / "vhtui.sqlite3"

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def keymap_file(self) -> Path:
        return self.root / "keymap.toml"

    @property
    def exports(self) -> Path:
        """Where the workbench writes what it exports by default: never into a project's tree,
        whose next code snapshot would take it."""
        return self.root / "exports"

    @property
    def runners_file(self) -> Path:
        """Registered runner agents (`vhtui runner add`)."""
        return self.root / "runners.json"

    @property
    def crash_reports(self) -> Path:
        """Tracebacks of vhtui's own failures, one file each, named in the one line the user sees."""
        return self.root / "crash-reports"

    # -- executions ---------------------------------------------------------------------------
    @property
    def executions(self) -> Path:
        return self.root / "executions"

    def execution_dir(self, execution_id: int) -> Path:
        return self.executions / str(execution_id)

    def log_path(self, execution_id: int) -> Path:
        return self.execution_dir(execution_id) / "output.log"

    def supervisor_log(self, execution_id: int) -> Path:
        return self.execution_dir(execution_id) / "supervisor.log"

    @property
    def envs(self) -> Path:
        """Layered Python environments, shared by executions with the same requirements."""
        return self.root / "envs"

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    # -- data ---------------------------------------------------------------------------------
    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def source_index(self) -> Path:
        """What each fetched input URL held last time (size, mtime, ETag -> checksum)."""
        return self.root / "cache" / "sources"

    @property
    def valid_configs(self) -> Path:
        """valohai.yaml texts that passed schema validation, by hash: skipped next time."""
        return self.root / "cache" / "valid-configs"

    # -- deployments and agents ---------------------------------------------------------------
    @property
    def deployments(self) -> Path:
        return self.root / "deployments"

    def version_dir(self, version_id: int) -> Path:
        return self.deployments / str(version_id)

    def endpoint_dir(self, version_id: int, endpoint: str) -> Path:
        return self.version_dir(version_id) / endpoint

    @property
    def router_state(self) -> Path:
        """The running router's pid, start time, host and port."""
        return self.deployments / "router.json"

    @property
    def router_log(self) -> Path:
        return self.deployments / "router.log"

    @property
    def agent(self) -> Path:
        """A runner agent's state (`vhtui runner serve`) unless it is given --state-dir."""
        return self.root / "agent"


def current_home() -> Home:
    root = os.environ.get("VHTUI_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "vhtui"
    )
    return Home(Path(root).resolve())
