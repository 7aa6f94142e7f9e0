"""An execution's log on screen: any size, growing, with stderr marked, ANSI colours and search.

Built on the Line API over a `LogIndex`, as toolong is: the widget is as tall as the log has lines
and `render_line` reads, decodes and styles only the rows on screen, so a frame costs the same for
a 1 KB and a 1 GB log. The event loop only polls the file (`LogIndex.refresh`, a few MB at most)
and preads visible lines; indexing a backlog and searching run in thread workers that answer with
messages.

Rows are lines, except while the index has a gap (a big backlog indexed from its end first): one
row at `gap_line` then stands for the lines not indexed yet and shows the progress, and lines
after it have no number. When the gap is filled its lines take that row's place, and the view
shifts so that what was on screen stays there.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import var
from textual.screen import ModalScreen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input
from textual.worker import get_current_worker

from vhtui.tui.logindex import GapScan, LogIndex

MAX_LINE_BYTES = 64 << 10  # a longer line (a runaway progress bar) shows its first 64 KiB
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")  # what a terminal would act on


def _printable(raw: bytes) -> str:
    """Text for `Text.from_ansi`: escapes and `\\r` kept (it keeps what follows the last `\\r`,
    as a terminal would show), a CRLF ending and other control characters not."""
    return _CONTROL.sub("\ufffd", raw.decode("utf-8", "replace").removesuffix("\r"))


class LogSearchPrompt(ModalScreen[str | None]):
    """A one-line search box over the bottom of the screen; dismissed with the text, or None."""

    DEFAULT_CSS = """
    LogSearchPrompt { background: transparent; }
    LogSearchPrompt > Input { dock: bottom; width: 100%; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False, id="log.search_cancel")]

    def __init__(self, value: str = "") -> None:
        super().__init__()
        self.value = value

    def compose(self) -> ComposeResult:
        yield Input(value=self.value, placeholder="search (case-insensitive)")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LogView(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("f", "toggle_follow", "Follow", id="log.follow"),
        Binding("slash", "start_search", "Search", key_display="/", id="log.search"),
        Binding("n", "next_match", "Next", id="log.next_match"),
        Binding("N", "previous_match", "Previous", id="log.previous_match"),
        Binding("escape", "clear_search", "Clear search", show=False, id="log.clear_search"),
        Binding("g,home", "scroll_home", "Start", show=False, id="log.start"),
        Binding("G,end", "scroll_end", "End", show=False, id="log.end"),
        Binding("j,down", "scroll_down", "Down", show=False, id="log.down"),
        Binding("k,up", "scroll_up", "Up", show=False, id="log.up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="log.page_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="log.page_up"),
        Binding("left", "scroll_left", "Left", show=False, id="log.left"),
        Binding("right", "scroll_right", "Right", show=False, id="log.right"),
        Binding("number_sign", "toggle_line_numbers", "Line numbers", show=False, id="log.line_numbers"),
    ]
    COMPONENT_CLASSES = {
        "log-view--line-number",
        "log-view--stderr",
        "log-view--stderr-mark",
        "log-view--match",
        "log-view--current-match",
        "log-view--status",
    }
    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $foreground;
        &:focus { background-tint: $foreground 5%; }
        & > .log-view--line-number { color: $foreground 40%; }
        & > .log-view--stderr { color: $text-error; }
        & > .log-view--stderr-mark { color: $error; }
        & > .log-view--match { background: $warning 40%; }
        & > .log-view--current-match { background: $warning; color: $background; text-style: bold; }
        & > .log-view--status { color: $foreground 50%; text-style: italic; }
    }
    """

    follow: var[bool] = var(True, init=False)
    """Keep the end in view as the log grows; scrolling up turns it off, `end` back on."""
    line_numbers: var[bool] = var(False, init=False)

    class FollowChanged(Message):
        def __init__(self, log_view: LogView, follow: bool) -> None:
            super().__init__()
            self.log_view = log_view
            self.follow = follow

        @property
        def control(self) -> LogView:
            return self.log_view

    class SearchResult(Message):
        """After a jump to a match (`line` is its index), or a search that found none (None)."""

        def __init__(self, log_view: LogView, pattern: str, line: int | None) -> None:
            super().__init__()
            self.log_view = log_view
            self.pattern = pattern
            self.line = line

        @property
        def control(self) -> LogView:
            return self.log_view

    class _Found(Message, bubble=False):
        def __init__(self, search: int, pattern: str, line: int | None) -> None:
            super().__init__()
            self.search = search
            self.pattern = pattern
            self.line = line

    class _GapScanned(Message, bubble=False):
        def __init__(self, scan: GapScan) -> None:
            super().__init__()
            self.scan = scan

    def __init__(self, path: Path, *, follow: bool = True, line_numbers: bool = False,
                 poll_interval: float = 0.1, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.index = LogIndex(path)
        self.poll_interval = poll_interval
        self.set_reactive(LogView.follow, follow)
        self.set_reactive(LogView.line_numbers, line_numbers)
        self.pattern = ""
        self.match_line: int | None = None
        self._pattern_re: re.Pattern[str] | None = None
        self._palette_cache: dict[str, Style] | None = None
        self._strips: LRUCache[tuple[int, str, bool], Strip] = LRUCache(1024)
        self._widest = 0
        self._scanning = False
        self._searches = 0  # the number of the latest search; older answers are dropped
        self._search_busy = False  # the latest search has not answered yet
        self._pending_scan: GapScan | None = None  # a scanned gap waits while a search runs
        self._gap_shown = -1.0

    # -- polling and the index --------------------------------------------------------------------
    def on_mount(self) -> None:
        self._poll()
        self.set_interval(self.poll_interval, self._poll)

    def on_unmount(self) -> None:
        self.index.close()

    def _poll(self) -> None:
        index = self.index
        generation = index.generation
        added = index.refresh()
        if index.generation != generation:
            self._start_over()
        if index.gap is not None and not self._scanning:
            self._scanning = True
            self._scan_gap()
        if added:
            self._sync_size()
        elif index.gap is not None and round(index.gap_progress, 2) != self._gap_shown:
            self._gap_shown = round(index.gap_progress, 2)
            self.refresh()

    def _start_over(self) -> None:
        """The log was cut back or replaced (a resumed run): drop what was drawn, found or scanned
        from the old one, and show the new one from its start (following, if the view was)."""
        self.workers.cancel_group(self, "log-index")
        self._scanning = False
        self._pending_scan = None
        self._searches += 1
        self._search_busy = False
        self.match_line = None
        self._strips.clear()
        self._widest = 0
        self._gap_shown = -1.0
        self._sync_size()

    @work(thread=True, exclusive=True, group="log-index")
    def _scan_gap(self) -> None:
        worker = get_current_worker()
        scan = self.index.scan_gap(cancelled=lambda: worker.is_cancelled)
        if scan is not None:
            self.post_message(self._GapScanned(scan))

    def on_log_view__gap_scanned(self, message: _GapScanned) -> None:
        self._pending_scan = message.scan
        if not self._search_busy:  # else the answer's line index is from before the gap was filled
            self._fill()

    def _fill(self) -> None:
        scan, self._pending_scan = self._pending_scan, None
        if scan is None:
            return
        gap_line = self.index.gap_line
        inserted = self.index.fill_gap(scan)
        self._scanning = False
        if self.match_line is not None and self.match_line >= gap_line:
            self.match_line += inserted
        y = self.scroll_y
        self._sync_size()
        if not self.follow and y > gap_line:
            self.scroll_to(y=y + inserted - 1, animate=False)

    def _sync_size(self) -> None:
        self.virtual_size = Size(self._gutter_width() + self._widest, self._row_count())
        if self.follow:
            # forced: a log that has just outgrown the view has no scrollbar until the next layout,
            # and Textual ignores a scroll of a widget without one (follow stayed at the top)
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self.refresh()

    # -- rows ---------------------------------------------------------------------------------------
    def _row_count(self) -> int:
        return self.index.line_count + (self.index.gap is not None)

    def _line_at_row(self, row: int) -> int | None:
        """The line shown on `row`; None for the row that stands for the gap."""
        gap_line = self.index.gap_line
        if gap_line is None or row < gap_line:
            return row
        return None if row == gap_line else row - 1

    def _row_of(self, line: int) -> int:
        gap_line = self.index.gap_line
        return line if gap_line is None or line < gap_line else line + 1

    def _first_visible_line(self) -> int:
        line = self._line_at_row(self.scroll_offset.y)
        return self.index.gap_line if line is None else line

    # -- rendering ----------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        if row >= self._row_count():
            if row == 0:
                return self._status("waiting for output…", width)
            return Strip.blank(width, self._palette["base"])
        line = self._line_at_row(row)
        if line is None:
            gap = self.index.gap
            return self._status(f"… indexing {(gap[1] - gap[0]) / 1e6:,.1f} MB of earlier output "
                                f"({self.index.gap_progress:.0%})", width)
        gutter = self._gutter(line)
        text = self._text(line).crop_extend(scroll_x, scroll_x + width - gutter.cell_length, self._palette["base"])
        return Strip.join([gutter, text])

    def _status(self, message: str, width: int) -> Strip:
        palette = self._palette
        return Strip([Segment(message, palette["status"])]).crop_extend(0, width, palette["base"])

    @property
    def _palette(self) -> dict[str, Style]:
        """The styles rows are drawn with, worked out once per style change (`rich_style` costs
        more than drawing a line)."""
        if self._palette_cache is None:
            base = self.rich_style

            def component(name: str, background: bool = False) -> Style:
                # its colours blended as the CSS says (the partial style drops their alpha)
                full = self.get_component_rich_style(f"log-view--{name}")
                blended = Style(color=full.color, bgcolor=full.bgcolor if background else None)
                return base + self.get_component_rich_style(f"log-view--{name}", partial=True) + blended

            self._palette_cache = {
                "base": base,
                "line-number": component("line-number"),
                "stderr": component("stderr"),
                "stderr-mark": component("stderr-mark"),
                "status": component("status"),
                "match": component("match", background=True),
                "current-match": component("current-match", background=True),
            }
        return self._palette_cache

    def _gutter_width(self) -> int:
        return (len(str(self.index.line_count)) + 1 if self.line_numbers else 0) + 2

    def _gutter(self, line: int) -> Strip:
        """Line number (blank where unknown), then a mark for stderr lines."""
        palette = self._palette
        segments = []
        if self.line_numbers:
            number = self.index.line_number(line)
            width = len(str(self.index.line_count))
            segments.append(Segment(f"{'' if number is None else number:>{width}} ", palette["line-number"]))
        if self.index.stream_of(line) == "stderr":
            segments.append(Segment("▌", palette["stderr-mark"]))
        else:
            segments.append(Segment(" ", palette["base"]))
        segments.append(Segment(" ", palette["base"]))
        return Strip(segments)

    def _text(self, line: int) -> Strip:
        """The whole line, styled, uncropped; cached by byte offset, which a gap fill never moves."""
        current = line == self.match_line
        key = (self.index.offset(line), self.pattern, current)
        strip = self._strips.get(key)
        if strip is not None:
            return strip
        stderr = self.index.stream_of(line) == "stderr"
        style = self._palette["stderr" if stderr else "base"]
        text = Text.from_ansi(_printable(self.index.line(line, MAX_LINE_BYTES)), no_wrap=True, end="")
        text.expand_tabs()
        text.stylize_before(style)  # a span, beneath the escapes' (Text.render ignores Text.style)
        if self._pattern_re is not None:
            text.highlight_regex(self._pattern_re, self._palette["current-match" if current else "match"])
        strip = Strip(text.render(self.app.console), text.cell_len)
        self._strips[key] = strip
        if text.cell_len > self._widest:
            self._widest = text.cell_len
            self.call_later(self._sync_size)
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._palette_cache = None
        self._strips.clear()

    # -- follow -------------------------------------------------------------------------------------
    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.post_message(self.FollowChanged(self, follow))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value < old_value and new_value < self.max_scroll_y:
            self.follow = False

    def watch_line_numbers(self) -> None:
        self._sync_size()

    # -- search -------------------------------------------------------------------------------------
    def search(self, text: str) -> None:
        """Highlight `text` (case-insensitive) and jump to it: to the latest match while following,
        else to the first from the top of the screen down. An empty text clears the search."""
        self.pattern = text
        self._pattern_re = re.compile(re.escape(text), re.IGNORECASE) if text else None
        self.match_line = None
        self._searches += 1  # drop the answer of a search still running
        self._search_busy = False
        self._fill()
        self.refresh()
        if text:
            if self.follow:
                self._find(self.index.line_count - 1, backwards=True)
            else:
                self._find(self._first_visible_line(), backwards=False)

    def next_match(self) -> None:
        if self.pattern:
            start = self._first_visible_line() if self.match_line is None else self.match_line + 1
            self._find(start, backwards=False)

    def previous_match(self) -> None:
        if self.pattern:
            start = self._first_visible_line() if self.match_line is None else self.match_line - 1
            self._find(start, backwards=True)

    def _find(self, start: int, backwards: bool) -> None:
        self._searches += 1
        self._search_busy = True
        self._search(self._searches, self.pattern, start, backwards)

    @work(thread=True, exclusive=True, group="log-search")
    def _search(self, search: int, pattern: str, start: int, backwards: bool) -> None:
        line = self.index.search(pattern, start, backwards) if start >= 0 else None
        self.post_message(self._Found(search, pattern, line))

    def on_log_view__found(self, message: _Found) -> None:
        if message.search != self._searches:
            return
        self._search_busy = False
        if message.line is not None:
            self.follow = False
            self.match_line = message.line
            row = self._row_of(message.line)
            height = self.scrollable_content_region.height
            if not self.scroll_y <= row < self.scroll_y + height:
                self.scroll_to(y=max(0, row - height // 3), animate=False)
            self.refresh()
        else:
            self.app.bell()
        self.post_message(self.SearchResult(self, message.pattern, message.line))
        self._fill()

    # -- actions ------------------------------------------------------------------------------------
    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_start_search(self) -> None:
        self.app.push_screen(LogSearchPrompt(self.pattern), self._prompted)

    def _prompted(self, text: str | None) -> None:
        if text is not None:
            self.search(text)

    def action_next_match(self) -> None:
        self.next_match()

    def action_previous_match(self) -> None:
        self.previous_match()

    def action_clear_search(self) -> None:
        if not self.pattern:
            raise SkipAction()  # escape then means what the screen says: usually "back"
        self.search("")

    def action_toggle_line_numbers(self) -> None:
        self.line_numbers = not self.line_numbers

    def action_scroll_home(self) -> None:
        self.follow = False
        self.scroll_home(animate=False)

    def action_scroll_end(self) -> None:
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.follow = True

    def action_scroll_up(self) -> None:
        self.scroll_up(animate=False)

    def action_scroll_down(self) -> None:
        self.scroll_down(animate=False)

    def action_page_up(self) -> None:
        self.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)
