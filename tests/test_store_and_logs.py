"""The store's schema and concurrency, the log file format, metadata parsing, conditions."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from vhtui.engine.conditions import evaluate
from vhtui.supervision.logfile import LogReader, LogWriter
from vhtui.engine.metadata import MetadataSink
from vhtui.errors import VhtuiError
from vhtui.store import open_database
from vhtui.store import executions as execution_rows
from vhtui.store import projects as project_rows
from vhtui.store.schema import MIGRATIONS


def test_fresh_store_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite3")
    assert db.query_one("PRAGMA user_version")[0] == len(MIGRATIONS)
    assert db.query_one("PRAGMA journal_mode")[0] == "wal"
    db.close()
    reopened = open_database(tmp_path / "s.sqlite3")  # idempotent
    assert reopened.query_one("PRAGMA user_version")[0] == len(MIGRATIONS)


def test_store_from_a_newer_vhtui_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    open_database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(VhtuiError, match="newer vhtui"):
        open_database(path)


def test_counters_are_unique_under_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    project_id = project_rows.ensure(open_database(path), tmp_path)
    made: list[int] = []

    def writer() -> None:
        db = open_database(path)
        for _ in range(25):
            made.append(execution_rows.create(db, project_id, {
                "step": "s", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
                "environment": {}, "spec": {}}, [])["counter"])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(made) == list(range(1, 101))


def test_log_writer_keeps_whole_lines_and_streams(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    writer = LogWriter(log)
    assert writer.write("stdout", b"hel") == []  # an unfinished line waits
    writer.write("stderr", b"warn 1\nwarn")
    regions = writer.write("stdout", b"lo\nworld\npart")
    assert b"".join(buf[start:end] for buf, start, end in regions) == b"hello\nworld\n"
    writer.write("stderr", b" 2\n")
    tail = writer.close()
    assert [buf[start:end] for buf, start, end in tail] == [b"part\n"]
    lines = [(stream, text) for _, stream, text in LogReader(log).read_lines()]
    assert lines == [("stderr", b"warn 1"), ("stdout", b"hello"), ("stdout", b"world"),
                     ("stderr", b"warn 2"), ("stdout", b"part")]
    # reading from an offset gives the rest, with streams still right
    offset = len(b"warn 1\nhello\n")
    assert [t for _, _, t in LogReader(log).read_lines(offset)] == [b"world", b"warn 2", b"part"]
    reader = LogReader(log)
    reader.refresh()
    assert reader.stream_at(offset + len(b"world\n")) == "stderr"


def test_runaway_line_is_written_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    writer = LogWriter(log)
    writer.write("stdout", b"x" * (2 << 20))  # a progress bar with no newline
    writer.close()
    assert log.stat().st_size == (2 << 20) + 1


def test_metadata_lines_are_found_and_summarised(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite3")
    project_id = project_rows.ensure(db, tmp_path)
    execution = execution_rows.create(db, project_id, {
        "step": "s", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [])
    sink = MetadataSink(tmp_path / "s.sqlite3", execution["id"])
    block = (b'{"epoch": 1, "loss": 0.5}\nplain text {not json}\n  {"loss": NaN, "val.acc": 0.7}  \n'
             b'[1, 2]\n{"broken": \n{"epoch": 2}\n')
    assert sink.feed([(block, 0, len(block))], 1000.0) == 3
    assert sink.feed([(b'{"only": "in the region"} {"x": 1}', 0, 25)], 1001.0) == 1
    sink.close()
    row = execution_rows.get(db, execution["id"])
    assert row["metadata_count"] == 4
    assert row["metadata_summary"]["epoch"] == 2 and row["metadata_summary"]["val.acc"] == 0.7
    assert row["metadata_summary"]["only"] == "in the region"
    from vhtui.store.metadata import iter_events

    events = [e for _, _, e in iter_events(db, execution["id"])]
    assert events[0] == {"epoch": 1, "loss": 0.5} and events[3] == {"only": "in the region"}
    assert events[1] == {"loss": "nan", "val.acc": 0.7}  # see vhtui.store.metadata


def strict_json(text: str | bytes) -> Any:
    """Parse as JSON itself defines it: no NaN, no Infinity (Python's json.loads reads them)."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def store_metadata(db_path: Path, db: Any, project_id: int, title: str, events: list[dict[str, Any]]) -> int:
    """An execution whose stdout printed `events` as Python's json.dumps prints them."""
    execution = execution_rows.create(db, project_id, {
        "step": "s", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}, "title": title}, [])
    sink = MetadataSink(db_path, execution["id"])
    lines = b"".join(json.dumps(event).encode() + b"\n" for event in events)
    assert sink.feed([(lines, 0, len(lines))], 1000.0) == len(events)
    sink.close()
    return execution["id"]


def test_nan_and_infinity_are_stored_as_valid_json_and_sort(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite3")
    project_id = project_rows.ensure(db, tmp_path)
    first = store_metadata(tmp_path / "s.sqlite3", db, project_id, "nan", [
        {"step": 0, "loss": 0.5, "grad": 1.0}, {"step": 1, "loss": float("nan"), "grad": float("inf")},
        {"step": 2, "nested": [float("-inf")], "note": "NaN in a string"}])
    for title, loss in {"inf": float("inf"), "-inf": float("-inf"), "one": 1.0, "two": 2}.items():
        store_metadata(tmp_path / "s.sqlite3", db, project_id, title, [{"loss": loss}])
    store_metadata(tmp_path / "s.sqlite3", db, project_id, "none", [{"other": 1}])
    for row in db.query("SELECT metadata_summary FROM executions"):
        strict_json(row[0])
    for row in db.query("SELECT data FROM metadata"):
        for line in bytes(row[0]).split(b"\n"):
            strict_json(line)
    from vhtui.store.metadata import iter_events

    events = [e for _, _, e in iter_events(db, first)]
    assert events[1:] == [{"step": 1, "loss": "nan", "grad": "inf"},
                          {"step": 2, "nested": ["-inf"], "note": "NaN in a string"}]
    assert execution_rows.get(db, first)["metadata_summary"] == {
        "step": 2, "loss": "nan", "grad": "inf", "nested": ["-inf"], "note": "NaN in a string"}
    for descending, order in ((True, ["inf", "two", "one", "-inf"]), (False, ["-inf", "one", "two", "inf"])):
        rows = execution_rows.page(db, project_id, offset=0, limit=10, sort="metric:loss", descending=descending)
        assert [row["title"] for row in rows] == [*order, "none", "nan"]  # no value, nan: last, newest first
    assert len(execution_rows.page(db, project_id, offset=0, limit=10, sort='metric:a "quoted" key')) == 6


def test_json_documents_of_a_run_that_printed_nan_are_valid_json(project: Project) -> None:
    project.write("valohai.yaml", """
        - step:
            name: diverge
            image: python:3.11
            command: python diverge.py
    """)
    project.write("diverge.py", """
        import json
        print(json.dumps({"epoch": 1, "loss": 0.5}))
        print(json.dumps({"epoch": 2, "loss": float("nan"), "best": float("inf"), "worst": float("-inf")}))
    """)
    counter = project.run("diverge", "--env", "current")
    assert project.wait(counter)["status"] == "complete"
    info = strict_json(project.vhtui("exec", "info", str(counter), "--json").stdout)
    assert info["metadata"] == {"epoch": 2, "loss": "nan", "best": "inf", "worst": "-inf"}
    events = strict_json(project.vhtui("exec", "metadata", str(counter), "--json").stdout)
    assert [(e["loss"], e.get("best")) for e in events] == [(0.5, None), ("nan", "inf")]
    listed = strict_json(project.vhtui("exec", "list", "--json").stdout)
    assert listed["results"][0]["metadata"]["loss"] == "nan"


def test_a_metadata_sink_keeps_nan_a_number_for_stop_conditions(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.sqlite3")
    execution = execution_rows.create(db, project_rows.ensure(db, tmp_path), {
        "step": "s", "runner": "local", "command": "true", "parameters": {}, "code_version": {},
        "environment": {}, "spec": {}}, [])
    sink = MetadataSink(tmp_path / "s.sqlite3", execution["id"])
    line = b'{"loss": NaN, "best": Infinity}\n'
    sink.feed([(line, 0, len(line))], 1000.0)
    assert math.isnan(sink.summary["loss"]) and evaluate("best > 1e308", sink.summary)
    sink.close()


@pytest.mark.parametrize(("expression", "summary", "expected"), [
    ("loss < 0.1", {"loss": 0.05}, True),
    ("loss < 0.1", {"loss": 0.5}, False),
    ("loss < 0.1", {}, False),  # not reported yet
    ("val.acc >= 0.9 and epoch > 2", {"val.acc": 0.95, "epoch": 3}, True),
])
def test_stop_conditions_use_leval(expression: str, summary: dict, expected: bool) -> None:
    assert evaluate(expression, summary) is expected


def test_a_stop_condition_never_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    expression = f"__import__('pathlib').Path({str(marker)!r}).touch() is None"  # eval: True, and a file
    assert evaluate(expression, {}) is False
    assert not marker.exists()
