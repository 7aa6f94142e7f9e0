"""LogIndex (incremental, tail-first indexing, streams, search) and LogView driven through a tiny app."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tui.log_view_app import SAMPLE, LogViewApp, write_log
from tests.tui.waiting import until
from vhtui.tui import logindex
from vhtui.supervision.logfile import LogWriter, truncate_log
from vhtui.tui.logindex import LogIndex
from vhtui.tui.widgets.log_view import LogView


def numbered(n: int, start: int = 0) -> bytes:
    return b"".join(b"line %d of the log\n" % i for i in range(start, start + n))


def full_index(index: LogIndex) -> None:
    index.refresh()
    if index.gap is not None:
        assert index.fill_gap(index.scan_gap()) > 0
    assert index.gap is None


# -- LogIndex ---------------------------------------------------------------------------------------
def test_missing_file_then_appends_with_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    index = LogIndex(path)
    assert (index.refresh(), index.line_count, index.search("x", 0)) == (0, 0, None)
    path.write_bytes(b"first\nsec")
    assert index.refresh() == 1 and index.line_count == 1
    with path.open("ab") as f:
        f.write(b"ond\n")
    assert index.refresh() == 1
    assert index.lines(0, 5) == [b"first", b"second"]
    assert index.refresh() == 0
    with path.open("ab") as f:
        f.write(b"third\r\n\nfifth\nsix")
    assert index.refresh() == 3
    assert index.lines(2, 3) == [b"third\r", b"", b"fifth"]
    assert [index.line_number(i) for i in range(5)] == [1, 2, 3, 4, 5]
    assert index.offset(1) == 6 and index.line(1, limit=3) == b"sec"


def test_stream_of_follows_the_streams_records(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    writer = LogWriter(path)
    writer.write("stdout", b"out 0\nout 1\n")
    writer.write("stderr", b"err 2\n")
    writer.write("stdout", b"out 3\n")
    writer.write("stderr", b"err 4\nerr 5\n")
    writer.close()
    index = LogIndex(path)
    index.refresh()
    streams = [index.stream_of(i) for i in range(index.line_count)]
    assert streams == ["stdout", "stdout", "stderr", "stdout", "stderr", "stderr"]


def test_search_forward_and_backward(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes("alpha\nthe \x1b[31mNee\x1b[0mdle here\nbeta\nneedle again\nGrüße aus Köln\ngamma\n".encode())
    index = LogIndex(path)
    index.refresh()
    assert index.search("needle", 0) == 1  # case-insensitive, across an ANSI escape
    assert index.search("needle", 1) == 1  # start is inclusive
    assert index.search("needle", 2) == 3
    assert index.search("NEEDLE", 5, backwards=True) == 3
    assert index.search("needle", 2, backwards=True) == 1
    assert index.search("needle", 0, backwards=True) is None
    assert index.search("needle", 4) is None
    assert index.search("GRÜSSE", 0) is None and index.search("grüße", 0) == 4 and index.search("KÖLN", 0) == 4
    assert index.search("31m", 0) is None  # escapes are not text
    assert index.search("", 0) is None


def test_search_in_small_chunks_agrees_with_a_line_by_line_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logindex, "SEARCH_CHUNK", 50)  # many chunk boundaries
    path = tmp_path / "output.log"
    lines = [b"line %d%s" % (i, b" MATCH" if i % 7 == 3 else b"") for i in range(100)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    index = LogIndex(path)
    index.refresh()
    hits = [i for i, line in enumerate(lines) if b"match" in line.lower()]
    for start in range(100):
        assert index.search("match", start) == next((h for h in hits if h >= start), None)
        assert index.search("match", start, backwards=True) == next((h for h in reversed(hits) if h <= start), None)


def test_backlog_is_indexed_from_the_end_first_then_the_gap_is_filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logindex, "SEARCH_CHUNK", 200)
    path = tmp_path / "output.log"
    path.write_bytes(numbered(2000))  # ~40 KB
    index = LogIndex(path, tail_bytes=1000, refresh_limit=4000)
    tail = index.refresh()
    assert 40 <= tail <= 60 and index.line_count == tail
    assert index.gap is not None and index.gap[0] == 0 and index.gap_line == 0
    assert index.line(tail - 1) == b"line 1999 of the log"
    assert index.line_number(tail - 1) is None  # not known until the gap is filled
    first_tail = int(index.line(0).split()[1])
    assert index.offset(0) == len(numbered(first_tail))

    with path.open("ab") as f:  # appends while the gap is open are indexed as usual
        f.write(numbered(10, start=2000))
    assert index.refresh() == 10
    assert index.search("line 1700 ", 0) is None  # in the gap: not searchable yet
    assert index.search("line 2005 ", 0) == tail + 5

    scan = index.scan_gap()
    assert 0.99 <= index.gap_progress <= 1.0
    assert index.fill_gap(scan) == first_tail and index.gap is None
    assert index.line_count == 2010
    assert [index.line_number(i) for i in (0, 2009)] == [1, 2010]
    assert index.lines(0, 2010) == numbered(2010).splitlines()
    assert index.search("LINE 1700 ", 0) == 1700
    assert index.search("line 3 ", 2009, backwards=True) == 3


def test_gap_after_already_indexed_lines(tmp_path: Path) -> None:
    """A burst that outruns refresh() leaves a gap after the lines already indexed, which keep their numbers."""
    path = tmp_path / "output.log"
    path.write_bytes(numbered(100))
    index = LogIndex(path, tail_bytes=500, refresh_limit=4000)
    assert index.refresh() == 100
    with path.open("ab") as f:
        f.write(numbered(1000, start=100) + b"partial")
    index.refresh()
    assert index.gap_line == 100 and index.line_number(99) == 100 and index.line_number(100) is None
    assert index.line(index.line_count - 1) == b"line 1099 of the log"
    assert index.fill_gap(index.scan_gap()) > 0
    assert index.lines(0, 2000) == numbered(1100).splitlines()


def test_a_million_lines(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    with path.open("wb") as f:
        for block in range(100):
            f.write(numbered(10_000, start=block * 10_000))
    index = LogIndex(path)
    index.refresh()  # the end first: the last line reads before the backlog is indexed
    assert index.gap is not None and index.line(index.line_count - 1) == b"line 999999 of the log"
    full_index(index)
    assert index.line_count == 1_000_000
    for i in (0, 1, 123_456, 500_000, 999_999):
        assert index.line(i) == b"line %d of the log" % i and index.line_number(i) == i + 1
    assert index.search("LINE 999998 ", 0) == 999_998
    assert index.search("line 17 ", 999_999, backwards=True) == 17


def test_a_truncated_log_that_grows_again_is_indexed_anew(tmp_path: Path) -> None:
    """As the engine's truncate_log does when it resumes a remote run: the lines read after the
    cut are exactly the new ones, stream marks included (the old index read them at stale offsets)."""
    path = tmp_path / "output.log"
    write_log(path, [("stdout", numbered(50)), ("stderr", b"an error\n")])
    index = LogIndex(path)
    assert index.refresh() == 51 and index.stream_of(50) == "stderr"
    truncate_log(path, len(numbered(3)))
    write_log(path, [("stdout", b"resumed %d\n" % i) for i in range(5)])
    index.refresh()
    assert index.lines(0, 100) == numbered(3).splitlines() + [b"resumed %d" % i for i in range(5)]
    assert [index.stream_of(i) for i in range(index.line_count)] == ["stdout"] * 8
    assert index.search("resumed 4", 0) == 7 and index.search("line 40 ", 0) is None


def test_a_log_replaced_by_another_file_is_indexed_anew(tmp_path: Path) -> None:
    """Same or larger size, but another file (a new inode): its lines, not the old one's."""
    path = tmp_path / "output.log"
    path.write_bytes(numbered(10))
    index = LogIndex(path)
    assert index.refresh() == 10
    replacement = tmp_path / "new.log"
    replacement.write_bytes(b"".join(b"other %02d of the new log\n" % i for i in range(20)))
    replacement.replace(path)
    index.refresh()
    assert index.lines(0, 100) == [b"other %02d of the new log" % i for i in range(20)]
    path.unlink()  # gone: nothing left to show
    index.refresh()
    assert index.line_count == 0


def test_a_log_rewritten_in_place_drops_the_old_gap_scan(tmp_path: Path) -> None:
    """Cut and grown back to its old size between two looks (the same file, no smaller): noticed by
    its changed bytes; the gap scanned in the old file, the same bytes [begin, end) as the new
    one's, is not installed in the new one."""
    path = tmp_path / "output.log"
    path.write_bytes(numbered(2000))
    index = LogIndex(path, tail_bytes=1000, refresh_limit=4000)
    index.refresh()
    scan = index.scan_gap()
    rewritten = numbered(2000).replace(b"line", b"LINE")
    path.write_bytes(rewritten)
    index.refresh()
    assert index.gap == scan.gap and index.fill_gap(scan) == 0
    full_index(index)
    assert index.lines(0, 3000) == rewritten.splitlines()


# -- LogView in an app --------------------------------------------------------------------------------
def rows(view: LogView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.scrollable_content_region.height)]


def last_row(view: LogView) -> str:
    return next(row for row in reversed(rows(view)) if row)


@pytest.mark.asyncio
async def test_waits_for_output_then_follows_appends(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    app = LogViewApp(path)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        assert "waiting for output" in rows(view)[0]
        writer = LogWriter(path)
        writer.write("stdout", numbered(3))
        await until(pilot, lambda: view.index.line_count == 3)
        assert rows(view)[:3] == ["  line 0 of the log", "  line 1 of the log", "  line 2 of the log"]
        writer.write("stdout", numbered(200, start=3))
        await until(pilot, lambda: last_row(view) == "  line 202 of the log")
        assert view.follow and view.scroll_y == view.max_scroll_y > 0
        writer.write("stdout", b"unfinished")
        writer.write("stdout", b" line\n")
        await until(pilot, lambda: last_row(view) == "  unfinished line")
        writer.close()


async def test_follows_a_log_that_outgrows_the_view_in_one_poll(tmp_path: Path) -> None:
    """Lines no wider than the first ones: only the new height can take the view to the end (it
    stayed at the top while following, until more output arrived)."""
    path = tmp_path / "output.log"
    app = LogViewApp(path)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        writer = LogWriter(path)
        writer.write("stdout", b"".join(b"line %03d\n" % i for i in range(3)))
        await until(pilot, lambda: view.index.line_count == 3)
        writer.write("stdout", b"".join(b"line %03d\n" % i for i in range(3, 200)))
        await until(pilot, lambda: view.index.line_count == 200)
        await pilot.pause()
        assert view.follow and last_row(view) == "  line 199"
        writer.close()


async def test_follows_a_log_that_is_truncated_and_grows_again(tmp_path: Path) -> None:
    """A resumed remote run cuts its log back and streams the rest again: the view shows the new
    lines and goes on following (it froze until the log passed its old size)."""
    path = tmp_path / "output.log"
    write_log(path, [("stdout", numbered(100))])
    app = LogViewApp(path)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: last_row(view) == "  line 99 of the log")
        truncate_log(path, len(numbered(5)))
        writer = LogWriter(path)
        writer.write("stderr", b"resumed from a checkpoint\n")
        await until(pilot, lambda: last_row(view) == "▌ resumed from a checkpoint")
        assert rows(view)[:6] == [f"  line {i} of the log" for i in range(5)] + ["▌ resumed from a checkpoint"]
        writer.write("stdout", numbered(50, start=1000))
        await until(pilot, lambda: last_row(view) == "  line 1049 of the log")
        assert view.follow and view.scroll_y == view.max_scroll_y > 0
        writer.close()


@pytest.mark.asyncio
async def test_scrolling_up_turns_follow_off_and_end_turns_it_on(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(numbered(100))
    app = LogViewApp(path)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: last_row(view) == "  line 99 of the log")
        await pilot.press("k")
        assert not view.follow and view.scroll_y == view.max_scroll_y - 1
        assert [(type(m), m.follow) for m in app.messages] == [(LogView.FollowChanged, False)]
        y = view.scroll_y
        with path.open("ab") as f:
            f.write(numbered(50, start=100))
        await until(pilot, lambda: view.index.line_count == 150)
        await pilot.pause()
        assert view.scroll_y == y and "line 99 " not in last_row(view)
        await pilot.press("end")
        assert view.follow and last_row(view) == "  line 149 of the log"
        await pilot.press("g")
        assert not view.follow and rows(view)[0] == "  line 0 of the log"
        await pilot.press("f")
        assert view.follow and last_row(view) == "  line 149 of the log"
        await pilot.press("pageup")
        assert not view.follow
        assert [m.follow for m in app.messages] == [False, True, False, True, False]


@pytest.mark.asyncio
async def test_search_jumps_to_matches_and_highlights_them(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    lines = [b"line %d%s" % (i, b" the Needle" if i in (40, 120, 180) else b"") for i in range(200)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    app = LogViewApp(path)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.index.line_count == 200)

        def results() -> list[int | None]:
            return [m.line for m in app.messages if isinstance(m, LogView.SearchResult)]

        await pilot.press("slash", *"NEEDLE", "enter")  # while following: the latest match
        await until(pilot, lambda: results() == [180])
        assert not view.follow and view.match_line == 180
        await pilot.press("N")
        await until(pilot, lambda: results()[-1] == 120)
        await pilot.press("N")
        await until(pilot, lambda: results()[-1] == 40)
        row = next(r for r in rows(view) if r.startswith("  line 40 "))
        assert row == "  line 40 the Needle"
        strip = view.render_line(rows(view).index(row))
        [highlight] = [s for s in strip if s.text == "Needle"]
        plain = next(s for s in strip if s.text.startswith("line 40"))
        assert highlight.style.bgcolor != plain.style.bgcolor
        await pilot.press("N")
        await until(pilot, lambda: len(results()) == 4)
        assert results()[-1] is None and view.match_line == 40  # none before: stays
        await pilot.press("n", "n")
        await until(pilot, lambda: results()[-1] == 180)
        assert any(r.startswith("  line 180 ") for r in rows(view))
        await pilot.press("escape")
        assert view.pattern == "" and view.match_line is None

        view.scroll_home(animate=False)
        view.search("line 1")  # not following: the first match from the top of the screen down
        await until(pilot, lambda: results()[-1] == 1)


@pytest.mark.asyncio
async def test_stderr_lines_and_ansi_colours_are_styled(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    write_log(path, SAMPLE)
    app = LogViewApp(path)
    async with app.run_test(size=(80, 12)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.index.line_count == len(SAMPLE))
        texts = rows(view)
        assert texts[2].startswith("▌ warning: learning rate is high")
        assert texts[1].startswith("  epoch 1") and texts[5] == "  progress 100%"
        assert texts[7].startswith("  done    took")  # tab expanded
        stdout_plain = next(s for s in view.render_line(1) if s.text.startswith("epoch"))
        stderr_plain = next(s for s in view.render_line(3) if s.text.startswith("UserWarning"))
        assert stderr_plain.style.color != stdout_plain.style.color
        [red] = [s for s in view.render_line(6) if s.text == "ERROR"]
        assert red.style.color.number == 1  # ANSI red
        [green] = [s for s in view.render_line(1) if s.text == "0.812"]
        assert green.style.color.number == 2  # ANSI green
        await pilot.press("number_sign")
        assert rows(view)[7].startswith("8   done")
        width = view.scrollable_content_region.width
        assert view.virtual_size.width > width  # the long line scrolls sideways
        await pilot.press("right", "right")
        await until(pilot, lambda: view.scroll_x > 0)


@pytest.mark.asyncio
async def test_big_log_shows_its_end_first_and_fills_in_behind(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    with path.open("wb") as f:
        for block in range(30):
            f.write(numbered(10_000, start=block * 10_000))  # ~6 MB: more than one refresh reads
    app = LogViewApp(path, line_numbers=True)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        assert "line 299999 of the log" in last_row(view)
        await until(pilot, lambda: view.index.gap is None)
        await pilot.pause()
        assert last_row(view) == "300000   line 299999 of the log" and view.follow
        await pilot.press("g")
        assert rows(view)[0] == "     1   line 0 of the log"


@pytest.mark.asyncio
async def test_filling_the_gap_keeps_what_is_on_screen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    scan_gap = LogIndex.scan_gap

    def held_scan(self: LogIndex, cancelled: Callable[[], bool]) -> logindex.GapScan | None:
        release.wait(10)
        return scan_gap(self, cancelled)

    monkeypatch.setattr(LogIndex, "scan_gap", held_scan)
    path = tmp_path / "output.log"
    with path.open("wb") as f:
        for block in range(30):
            f.write(numbered(10_000, start=block * 10_000))
    app = LogViewApp(path, line_numbers=True)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        assert view.index.gap is not None
        await pilot.press("g")
        assert "indexing" in rows(view)[0] and rows(view)[1].strip() == f"line {300_000 - view.index.line_count} of the log"
        await pilot.press("end", "k", "k")
        view.search("LINE 299995 ")
        await until(pilot, lambda: view.match_line is not None)
        before = rows(view)
        assert all(row.startswith("        line ") for row in before)  # no numbers yet
        release.set()
        await until(pilot, lambda: view.index.gap is None)
        await pilot.pause()
        after = rows(view)
        assert [row.split(maxsplit=1)[1] for row in after] == [row.strip() for row in before]
        assert after[0].startswith(f"{int(before[0].split()[1]) + 1} ")
        assert view.match_line == 299_995 and not view.follow


def test_snapshot(snap_compare) -> None:
    """The sample log at 80x24: line numbers, stderr marked in red, ANSI colours, a progress bar."""
    assert snap_compare(Path(__file__).parent / "log_view_app.py", terminal_size=(80, 24))
