"""The executions table: a virtual table that fetches from SQL only the rows it shows.

Textual's DataTable holds every row as widgets' data (15 s to first paint 100k rows here); this
table asks the store for one window of the filtered, sorted listing at a time, so its cost does
not grow with the history. Live updates refetch the window in place: no flicker, and the cursor
stays on the same execution when new ones arrive above it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from vhtui.store import Database, open_database
from vhtui.store import executions as execution_rows
from vhtui.store.metadata import is_number

STATUS_STYLE = {
    "created": ("·", "dim"), "queued": ("…", "blue"), "started": ("▶", "bold cyan"),
    "stopping": ("■", "yellow"), "complete": ("✔", "green"), "error": ("✖", "bold red"),
    "stopped": ("■", "yellow"), "crashed": ("☠", "bold magenta"),
}


TITLE_MIN = 16


@dataclass
class Column:
    key: str  # a SORTABLE column of the store, or metric:<name>
    title: str
    width: int


@dataclass
class Query:
    """What the table shows: a filter (`status:error step:train text`) and an order."""

    text: str = ""
    sort: str = "counter"
    descending: bool = True

    def parts(self) -> dict[str, str | None]:
        status = step = None
        words = []
        for word in self.text.split():
            if word.startswith("status:"):
                status = word[7:] or None
            elif word.startswith("step:"):
                step = word[5:] or None
            else:
                words.append(word)
        return {"status": status, "step": step, "text": " ".join(words) or None}


def format_duration(execution: dict[str, Any]) -> str:
    if not execution.get("started_at"):
        return ""
    seconds = (execution.get("ended_at") or time.time()) - execution["started_at"]
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ExecutionTable(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("enter", "open", "Open", id="executions.open"),
        Binding("space", "toggle_select", "Select", id="executions.select"),
        Binding("j,down", "cursor_down", "Down", show=False, id="executions.down"),
        Binding("k,up", "cursor_up", "Up", show=False, id="executions.up"),
        Binding("g,home", "first", "First", show=False, id="executions.first"),
        Binding("G,end", "last", "Last", show=False, id="executions.last"),
        Binding("pagedown", "page_down", "Page down", show=False, id="executions.page_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="executions.page_up"),
        Binding("o", "next_sort", "Sort", id="executions.sort"),
        Binding("O", "reverse_sort", "Reverse", show=False, id="executions.reverse"),
    ]

    cursor = reactive(0)

    class Opened(Message):
        def __init__(self, execution_id: int) -> None:
            super().__init__()
            self.execution_id = execution_id

    class Counted(Message):
        """The number of executions matching the filter is known (it may arrive after the rows)."""

        def __init__(self, total: int) -> None:
            super().__init__()
            self.total = total

    class SortChanged(Message):
        def __init__(self, query: Query) -> None:
            super().__init__()
            self.query = query

    def __init__(self, db: Database, project_id: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.db = db
        self.project_id = project_id
        self.query = Query()
        self.total = 0
        self.window_start = 0
        self.window: list[dict[str, Any]] = []
        self.selected: set[int] = set()
        self.metric_keys: list[str] = []
        self.param_keys: list[str] = []
        self._generation = 0  # of reloads: a count begun before the latest one is stale

    # -- data ---------------------------------------------------------------------------
    def reload(self) -> None:
        """Refetch the visible window now, and the total in a worker (after a filter, sort or change).

        The window query walks an index and stops at its LIMIT, so it stays fast on any history;
        counting every match cannot, so it never holds up a keystroke.
        """
        keep = self.current_id()
        self._generation += 1
        self._fetch_window(force=True)
        if len(self.window) < self._window_limit():  # the window holds the end: the total is known
            self._set_total(self.window_start + len(self.window))
        else:
            self._set_total(max(self.total, self.window_start + len(self.window)))
            self._count_in_background(self.query.parts(), self._generation)
        metrics: Counter[str] = Counter()
        params: Counter[str] = Counter()
        for recent in self.window[:50]:
            metrics.update(k for k, v in recent["metadata_summary"].items() if is_number(v))
            params.update(recent["parameters"].keys())
        self.metric_keys = [k for k, _ in metrics.most_common()]  # the most common first
        self.param_keys = [k for k, _ in params.most_common()]
        if keep is not None:
            for index, row in enumerate(self.window):
                if row["id"] == keep:
                    self.cursor = self.window_start + index
                    break
        self.cursor = max(0, min(self.cursor, self.total - 1))
        self.refresh()

    def _set_total(self, total: int) -> None:
        self.total = total
        if self.virtual_size.height != total + 1:  # a new virtual size costs a layout pass
            self.virtual_size = Size(self.size.width, total + 1)
        self.cursor = max(0, min(self.cursor, total - 1))
        self.refresh()
        self.post_message(self.Counted(total))

    @work(thread=True, exclusive=True, group="count")
    def _count_in_background(self, parts: dict[str, str | None], generation: int) -> None:
        db = open_database(self.db.path)
        try:
            total = execution_rows.count(db, self.project_id, **parts)
        finally:
            db.close()
        self.app.call_from_thread(self._counted, total, generation)

    def _counted(self, total: int, generation: int) -> None:
        """A count is taken only if no reload came since (a newer filter, sort or change), which
        would have started its own: an older count would hide the newest rows."""
        if generation == self._generation:
            self._set_total(total)

    def _window_limit(self) -> int:
        return self.body_height * 3

    @property
    def body_height(self) -> int:
        """Rows visible under the fixed header line."""
        return max(self.size.height - 1, 1)

    def _fetch_window(self, force: bool = False) -> None:
        top = int(self.scroll_y)
        height = self.body_height
        if not force and self.window_start <= top and top + height <= self.window_start + len(self.window):
            return
        start = max(0, top - height)
        self.window = execution_rows.page(
            self.db, self.project_id, offset=start, limit=self._window_limit(), sort=self.query.sort,
            descending=self.query.descending, **self.query.parts(),
        )
        self.window_start = start

    def row(self, index: int) -> dict[str, Any] | None:
        if not 0 <= index < self.total:
            return None
        if not self.window_start <= index < self.window_start + len(self.window):
            self.scroll_to(y=max(0, index - self.body_height // 2), animate=False, immediate=True)
            self._fetch_window(force=True)
        offset = index - self.window_start
        return self.window[offset] if 0 <= offset < len(self.window) else None

    def current_id(self) -> int | None:
        row = self.row(self.cursor) if self.total else None
        return row["id"] if row else None

    def columns(self) -> list[Column]:
        """Fixed columns, then the most common metrics and parameters that fit; the title gets the rest."""
        width = self.size.width or 100
        fixed = [Column("counter", "#", 6), Column("status", "status", 11), Column("step", "step", 14)]
        tail = [Column("duration", "duration", 9), Column("runner", "runner", 7)]
        room = width - sum(c.width + 1 for c in fixed + tail) - (TITLE_MIN + 1)
        extra: list[Column] = []
        candidates = [Column(f"metric:{k}", k[:10], 10) for k in self.metric_keys[:3]] + \
                     [Column(f"param:{k}", k[:12], 12) for k in self.param_keys[:2]]
        for column in candidates:
            if column.width + 1 <= room:
                extra.append(column)
                room -= column.width + 1
        title = Column("title", "title", TITLE_MIN + max(room, 0))
        return fixed + [title] + extra + tail

    def sortable_columns(self) -> list[str]:
        return [c.key for c in self.columns() if not c.key.startswith("param:")]

    def header_text(self) -> Text:
        """The column titles, the sorted one marked, aligned with the rows."""
        text = Text(style="bold")
        for column in self.columns():
            mark = ("▼" if self.query.descending else "▲") if column.key == self.query.sort else ""
            text.append(f"{column.title}{mark}"[: column.width].ljust(column.width) + " ")
        return text

    # -- rendering ----------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        if y == 0:  # the header stays while the rows scroll under it
            width = self.size.width
            return Strip([Segment(self.header_text().plain[:width].ljust(width), Style(bold=True))])
        index = int(self.scroll_y) + y - 1
        self._fetch_window()
        offset = index - self.window_start
        if not 0 <= offset < len(self.window) or index >= self.total:
            return Strip.blank(self.size.width, Style.null())
        execution = self.window[offset]
        is_cursor = index == self.cursor
        base = Style(reverse=True) if is_cursor and self.has_focus else Style(underline=True) if is_cursor else Style()
        segments = []
        for column in self.columns():
            text, style = self._cell(execution, column)
            segments.append(Segment(text[: column.width].ljust(column.width) + " ", base + Style.parse(style)))
        return Strip(segments).crop(0, self.size.width)

    def _cell(self, execution: dict[str, Any], column: Column) -> tuple[str, str]:
        key = column.key
        if key == "counter":
            mark = "●" if execution["id"] in self.selected else " "
            return f"{mark}#{execution['counter']}", "bold" if execution["id"] in self.selected else ""
        if key == "status":
            symbol, style = STATUS_STYLE.get(execution["status"], ("?", ""))
            return f"{symbol} {execution['status']}", style
        if key == "duration":
            return format_duration(execution), ""
        if key.startswith("metric:"):
            value = execution["metadata_summary"].get(key[7:])
            return ("", "") if value is None else (format_value(value), "cyan")
        if key.startswith("param:"):
            value = execution["parameters"].get(key[6:])
            return ("", "") if value is None else (format_value(value), "dim")
        return str(execution.get(key) or ""), ""

    # -- reactions ----------------------------------------------------------------------
    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total + 1)
        self._fetch_window(force=True)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._fetch_window()

    def watch_cursor(self, old: int, new: int) -> None:
        top = int(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + self.body_height:
            self.scroll_to(y=new - self.body_height + 1, animate=False)
        self.refresh()

    def on_click(self, event: Any) -> None:
        index = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= index < self.total:
            if index == self.cursor and event.chain == 2:
                self.action_open()
            self.cursor = index

    # -- actions ------------------------------------------------------------------------
    def action_cursor_down(self) -> None:
        self.cursor = min(self.cursor + 1, max(self.total - 1, 0))

    def action_cursor_up(self) -> None:
        self.cursor = max(self.cursor - 1, 0)

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = max(self.total - 1, 0)

    def action_page_down(self) -> None:
        self.cursor = min(self.cursor + self.body_height, max(self.total - 1, 0))

    def action_page_up(self) -> None:
        self.cursor = max(self.cursor - self.body_height, 0)

    def action_open(self) -> None:
        execution_id = self.current_id()
        if execution_id is not None:
            self.post_message(self.Opened(execution_id))

    def action_toggle_select(self) -> None:
        execution_id = self.current_id()
        if execution_id is None:
            return
        self.selected ^= {execution_id}
        self.action_cursor_down()
        self.refresh()

    def action_next_sort(self) -> None:
        keys = self.sortable_columns()
        position = keys.index(self.query.sort) if self.query.sort in keys else -1
        self.query.sort = keys[(position + 1) % len(keys)]
        self.query.descending = self.query.sort in ("counter", "duration", "created")
        self.reload()
        self.post_message(self.SortChanged(self.query))

    def action_reverse_sort(self) -> None:
        self.query.descending = not self.query.descending
        self.reload()
        self.post_message(self.SortChanged(self.query))

    def set_filter(self, text: str) -> None:
        """Show what matches `text`; the caller reloads (once) when it is ready."""
        self.query.text = text
        self.cursor = 0
        self.scroll_to(y=0, animate=False, immediate=True)
