"""What survives when things die: a supervisor killed with everything in outputs/, a supervisor that
fails by exception, a store that is lost, a busy store and a full disk. Each ends with one clear
reason, nothing stored before is lost, and no run is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project, poll
from tests.test_runners import require

STEPS = """
- step:
    name: writes-then-waits
    image: python:3.11
    command:
      - for i in 1 2 3 4 5 6 7 8 9; do head -c 300000 /dev/urandom > $VH_OUTPUTS_DIR/part-$i.bin; done
      - echo early > $VH_OUTPUTS_DIR/early.txt && chmod 0444 $VH_OUTPUTS_DIR/early.txt
      - echo written
      - sleep 120
- step:
    name: quick
    image: python:3.11
    command: echo done > $VH_OUTPUTS_DIR/result.txt
- step:
    name: chatty
    image: python:3.11
    command: python3 chatty.py
"""
CHATTY = """
import json, time
for i in range(300):
    print(json.dumps({"i": i}), flush=True)
    time.sleep(0.02)
"""


@pytest.fixture
def steps(project: Project) -> Project:
    project.write("valohai.yaml", STEPS)
    project.write("chatty.py", CHATTY)
    return project


def row(project: Project, counter: int) -> dict[str, Any]:
    with sqlite3.connect(project.home / "vhtui.sqlite3", timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM executions WHERE counter = ?", (counter,)).fetchone()
    return dict(found)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_outputs_of_a_killed_supervisor_are_collected_once(steps: Project) -> None:
    counter = steps.run("writes-then-waits", "--env", "current")
    poll("the step to write its outputs", lambda: "written" in steps.logs(counter))
    poll("the live output to be stored", lambda: [o for o in steps.info(counter)["outputs"] if o["name"] == "early.txt"])
    supervisor = row(steps, counter)["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    doc = steps.wait(counter)  # any reader reconciles: crashed, its command ended, a collector started
    assert doc["status"] == "crashed" and f"supervisor (pid {supervisor}) died" in doc["status_detail"]
    def collected() -> list[str] | None:
        names = sorted(o["name"] for o in steps.info(counter)["outputs"])
        return names if len(names) == 10 else None

    names = poll("the leftovers to be collected", collected)
    assert names == ["early.txt", *[f"part-{i}.bin" for i in range(1, 10)]]  # the live one once, not twice
    outputs = steps.info(counter)["outputs"]
    assert all(o["tags"] == ["from-crashed-run"] for o in outputs if o["name"] != "early.txt")
    again = steps.vhtui("exec", "outputs", str(counter), "--collect", "--json")
    assert "0 output(s) stored that were not yet" in again.stderr and len(json.loads(again.stdout)) == 10
    refused = steps.vhtui("exec", "outputs", str(steps.run("writes-then-waits", "--env", "current")), "--collect",
                          check=False)
    assert refused.returncode == 1 and "its supervisor stores its outputs" in refused.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 20 MB tmpfs: a disk that fills up. Mounting needs root, which CI has."""
    require(os.getuid() == 0, "mounting a tmpfs needs root")
    where = tmp_path / "small-disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_one_line_ends_the_run_and_keeps_what_was_stored(steps: Project, small_disk: Path,
                                                                        tmp_path: Path) -> None:
    steps.home = small_disk / "home"
    first = steps.wait(steps.run("quick", "--env", "current"))
    assert first["status"] == "complete"
    steps.write("valohai.yaml", STEPS + """
- step:
    name: flood
    image: python:3.11
    command:
      - python3 -c "import sys; [sys.stdout.write('x' * 999 + '\\n') for _ in range(40000)]"
      - sleep 120
""")
    counter = steps.run("flood", "--env", "current")
    doc = steps.wait(counter, timeout=90)
    assert doc["status"] == "error", doc
    assert doc["status_detail"] == f"the disk holding {steps.home} is full; the run was ended"
    state = json.loads(row(steps, counter)["runner_state"])
    assert not alive(state["pid"])  # nothing it started outlives it
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # what space is left, taken: the disk is full for what comes next
        try:
            while True:
                f.write(bytes(1 << 16))
        except OSError:
            pass
    result = steps.vhtui("run", "quick", "--env", "current", check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "full" in result.stderr or "no space left" in result.stderr
    filler.unlink()  # the user frees some space
    out = tmp_path / "out"
    steps.vhtui("data", "get", first["outputs"][0]["uri"], str(out))  # what was stored before is intact
    assert (out / "result.txt").read_text() == "done\n"


def test_a_lost_store_starts_anew_and_keeps_the_old_folders(steps: Project) -> None:
    first = steps.wait(steps.run("quick", "--env", "current"))
    assert first["status"] == "complete"
    for path in steps.home.glob("vhtui.sqlite3*"):
        path.unlink()
    result = steps.vhtui("run", "quick", "--env", "current")
    assert "the store was started anew; an old execution's folder is kept as" in result.stderr
    assert steps.wait(1)["status"] == "complete"
    kept = list((steps.home / "executions").glob("orphaned-1-*"))
    assert len(kept) == 1 and (kept[0] / "output.log").exists()


def test_a_damaged_store_is_one_line_naming_it(steps: Project) -> None:
    steps.wait(steps.run("quick", "--env", "current"))
    (steps.home / "vhtui.sqlite3").write_bytes(b"this is not a database" * 1000)
    for path in steps.home.glob("vhtui.sqlite3-*"):
        path.unlink()
    for args in (["exec", "list"], ["run", "quick", "--env", "current"], ["runner", "ls"]):
        result = steps.vhtui(*args, check=False)
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines() == [
            f"vhtui: error: the store at {steps.home / 'vhtui.sqlite3'} is damaged (file is not a database); "
            "see 'Recovering the store' in the README"], args


def test_the_home_and_the_store_are_private(steps: Project) -> None:
    steps.home.mkdir(mode=0o755)
    os.chmod(steps.home, 0o755)  # an older home that others could read
    result = steps.vhtui("exec", "list", check=False)
    assert f"made {steps.home} private to you (it was 755)" in result.stderr
    steps.wait(steps.run("quick", "--env", "current"))
    assert steps.home.stat().st_mode & 0o777 == 0o700
    for path in [*steps.home.glob("vhtui.sqlite3*"), *steps.home.glob("executions/*/output.log")]:
        assert path.stat().st_mode & 0o077 == 0, path
    assert "private" not in steps.vhtui("exec", "list").stderr  # said once


def test_an_unexpected_failure_is_one_line_and_a_report(project: Project) -> None:
    """No known input reaches this path (each has its own line); a division by zero stands in."""
    probe = ("import sys; from vhtui.cli import _guarded; sys.exit(_guarded(lambda: 1 / 0))")
    result = subprocess.run([sys.executable, "-c", probe], env=project.env(), capture_output=True, text=True)
    assert result.returncode == 70
    line = result.stderr.strip()
    assert line.startswith("vhtui: internal error: ZeroDivisionError: division by zero (the traceback is in ")
    report = Path(line.rsplit(" ", 1)[-1].rstrip(")"))
    assert report.parent == project.home / "crash-reports" and "Traceback" in report.read_text()


def test_a_store_held_by_another_process_is_ridden_out(steps: Project) -> None:
    """Another process holds the store's write lock for longer than a writer waits (1 s here, 60 s
    by default): the supervisor keeps the run and its events, and writes them once it can."""
    counter = steps.run("chatty", "--env", "current", VHTUI_BUSY_TIMEOUT="1")
    poll("events to arrive", lambda: steps.info(counter)["metadata_count"] > 20)
    with sqlite3.connect(steps.home / "vhtui.sqlite3", timeout=30, isolation_level=None) as holder:
        holder.execute("BEGIN IMMEDIATE")
        log = steps.home / "executions" / str(row(steps, counter)["id"]) / "supervisor.log"
        poll("the supervisor to meet the held lock", lambda: "trying again" in log.read_text(), timeout=30)
        holder.execute("ROLLBACK")
    doc = steps.wait(counter, timeout=90)
    assert doc["status"] == "complete", doc
    assert doc["metadata_count"] == 300 and doc["metadata"] == {"i": 299}
