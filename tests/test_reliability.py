"""Reliability: executions survive their launcher, die cleanly with their supervisor, stay consistent
under concurrent load, and end the way their limits, stop requests and stop conditions say.

Everything is driven through the CLI as a user drives it; the store is read directly only where the
CLI does not expose something (the supervisor's pid, the recorded process group, raw metadata rows).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import live_processes_with, poll
from tests.test_runners import STUBBORN, assert_given_its_grace_then_killed

if TYPE_CHECKING:
    from conftest import Project

CURRENT = ("--env", "current")  # no venv: the tests' own interpreter runs the commands
FINAL = ("complete", "error", "stopped", "crashed")


# -- helpers ----------------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _query(project: Project, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(project.home / "vhtui.sqlite3", timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _row(project: Project, counter: int) -> sqlite3.Row:
    rows = _query(project, "SELECT * FROM executions WHERE counter = ?", (counter,))
    assert len(rows) == 1, f"expected one execution #{counter}, found {len(rows)}"
    return rows[0]


def _try_info(project: Project, counter: int) -> dict[str, Any] | None:
    """`exec info --json`, or None while the execution does not exist yet."""
    result = project.vhtui("exec", "info", str(counter), "--json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _outputs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in doc["outputs"]}


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _process_alive(pid: int) -> bool:
    """Running (a zombie is dead, only waiting for its parent or init to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in (None, "Z", "X")


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _stdout_lines(project: Project, counter: int) -> list[str]:
    return project.logs(counter, "--stdout").splitlines()


@pytest.fixture(autouse=True)
def _no_leftovers(project: Project):  # type: ignore[no-untyped-def]
    """Whatever a failing test leaves running (a supervisor, a command's group) is killed after it."""
    yield
    if not (project.home / "vhtui.sqlite3").exists():
        return
    marks = ", ".join("?" for _ in FINAL)
    try:
        rows = _query(project, f"SELECT supervisor_pid, runner_state FROM executions WHERE status NOT IN ({marks})",
                      FINAL)
    except sqlite3.Error:
        return
    for row in rows:
        if row["runner_state"]:
            try:
                os.killpg(int(json.loads(row["runner_state"])["pgid"]), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, KeyError, ValueError):
                pass
        if row["supervisor_pid"]:
            try:
                os.kill(int(row["supervisor_pid"]), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# -- 1. the launcher dies ---------------------------------------------------------------------
WORK_YAML = """\
- step:
    name: work
    image: python:3.11
    command: python work.py {parameters}
    parameters:
      - name: n
        type: integer
        default: 10
"""

WORK_PY = """\
import argparse, json, os, time

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, required=True)
n = parser.parse_args().n
for i in range(n):
    print(f"line {i:03d}")
    print(json.dumps({"step": i, "loss": round(1.0 / (i + 1), 6)}))
    time.sleep(0.1)
with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "result.txt"), "w") as f:
    f.write("".join(f"{i}\\n" for i in range(n)))
print("done")
"""


def test_sigkilled_follower_does_not_take_the_execution_with_it(project: Project) -> None:
    n = 30  # ~3 s
    project.write("valohai.yaml", WORK_YAML)
    project.write("work.py", WORK_PY)
    follower = subprocess.Popen(
        [sys.executable, "-m", "vhtui", "run", "work", f"--n={n}", *CURRENT, "--follow"],
        cwd=project.root, env=project.env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        def started() -> dict[str, Any] | None:
            assert follower.poll() is None, "`vhtui run --follow` ended before the execution started"
            doc = _try_info(project, 1)
            assert doc is None or doc["status"] not in FINAL, f"#1 ended before the test could kill: {doc}"
            return doc if doc and doc["status"] == "started" else None

        poll("#1 to start", started, timeout=30)
        follower.send_signal(signal.SIGKILL)
        follower.communicate(timeout=10)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == -signal.SIGKILL
    assert project.info(1)["status"] in ("started", "stopping"), "the follower was not killed mid-run"

    doc = project.wait(1, timeout=60)
    assert doc["status"] == "complete", doc["status_detail"]
    assert doc["exit_code"] == 0

    expected: list[str] = []
    for i in range(n):
        expected += [f"line {i:03d}", json.dumps({"step": i, "loss": round(1.0 / (i + 1), 6)})]
    expected.append("done")
    assert _stdout_lines(project, 1) == expected

    events = json.loads(project.vhtui("exec", "metadata", "1", "--json").stdout)
    assert [e["_seq"] for e in events] == list(range(n))
    assert [e["step"] for e in events] == list(range(n))
    assert doc["metadata_count"] == n
    assert doc["metadata"] == {"step": n - 1, "loss": round(1.0 / n, 6)}

    outputs = _outputs(doc)
    content = "".join(f"{i}\n" for i in range(n)).encode()
    assert set(outputs) == {"result.txt"}
    assert outputs["result.txt"]["size"] == len(content)
    assert outputs["result.txt"]["checksums"]["sha256"] == _sha256(content)


# -- 2. the supervisor dies -------------------------------------------------------------------
HOLD_YAML = """\
- step:
    name: hold
    image: busybox
    command: sh hold.sh
"""

HOLD_SH = """\
sleep "$HOLD_MARK" &  # found by its unique argument: a sandboxed run's $! is its own namespace's
echo started > "$PIDFILE.tmp"
mv "$PIDFILE.tmp" "$PIDFILE"
i=0
while [ $i -lt 600 ]; do  # 2 min at most, should anything fail to kill it
  echo "tick $i"
  i=$((i + 1))
  sleep 0.2
done
"""


def test_sigkilled_supervisor_is_reported_crashed_and_its_processes_killed(project: Project, tmp_path: Path) -> None:
    project.write("valohai.yaml", HOLD_YAML)
    project.write("hold.sh", HOLD_SH)
    pidfile = tmp_path / "grandchild.pid"
    mark = f"300.{uuid.uuid4().int % 10**9}"
    counter = project.run("hold", *CURRENT, "--env-var", f"PIDFILE={pidfile}", "--env-var", f"HOLD_MARK={mark}")
    try:
        project.wait_for_status(counter, "started", timeout=30)
        poll("the command to start its grandchild", pidfile.exists, timeout=30)
        [grandchild] = poll("the grandchild", lambda: live_processes_with(mark), timeout=10)
        row = _row(project, counter)
        supervisor_pid = row["supervisor_pid"]
        pgid = int(json.loads(row["runner_state"])["pgid"])
        assert supervisor_pid and _process_alive(supervisor_pid)
        assert _process_alive(grandchild)
        assert os.getpgid(grandchild) == pgid, "the background process should be in the command's group"

        os.kill(supervisor_pid, signal.SIGKILL)
        poll("the supervisor to die", lambda: not _process_alive(supervisor_pid), timeout=10)

        doc = project.info(counter)
        assert doc["status"] == "crashed"
        assert doc["status_detail"] and "supervisor" in doc["status_detail"].lower(), doc["status_detail"]
        assert doc["ended_at"]

        poll(f"the command's process group {pgid} to be gone", lambda: not _group_alive(pgid), timeout=5)
        poll(f"the background grandchild {grandchild} to be gone", lambda: not _process_alive(grandchild), timeout=5)
        # dead for good: it is not brought back, and the verdict stays
        assert project.info(counter)["status"] == "crashed"
    finally:  # never leave a `sleep 300` behind, whatever failed
        for pid in live_processes_with(mark):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- 3. concurrency against one store ---------------------------------------------------------
FLOOD_YAML = """\
- step:
    name: flood
    image: python:3.11
    command: python flood.py
"""

# Each flood waits until every one of them has started (FLOOD_BARRIER gets a file from each), so
# they contend by construction.
FLOOD_PY = """\
import json, os, time
barrier = os.environ["FLOOD_BARRIER"]
open(os.path.join(barrier, os.environ["VH_EXECUTION_ID"]), "w").close()
while len(os.listdir(barrier)) < int(os.environ["FLOOD_RUNS"]):
    time.sleep(0.05)
for i in range(50000): print(json.dumps({"i": i, "loss": 1.0 / (i + 1)}))
"""
FLOOD_EVENTS = 50_000
FLOOD_RUNS = 8


@pytest.mark.slow
def test_eight_parallel_metadata_floods_while_listing(project: Project) -> None:
    project.write("valohai.yaml", FLOOD_YAML)
    project.write("flood.py", FLOOD_PY)
    barrier = project.root.parent / "barrier"
    barrier.mkdir()
    env = {"VHTUI_MAX_PARALLEL": str(FLOOD_RUNS), "FLOOD_BARRIER": str(barrier), "FLOOD_RUNS": str(FLOOD_RUNS)}
    deadline = time.monotonic() + 240  # a hang guard; how long this takes is no assertion

    # every launch at once: they contend for the store from the first write
    launchers = [
        subprocess.Popen([sys.executable, "-m", "vhtui", "run", "flood", *CURRENT], cwd=project.root,
                         env=project.env(**env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(FLOOD_RUNS)
    ]
    stderrs: list[str] = []
    counters = []
    for launcher in launchers:
        out, err = launcher.communicate(timeout=60)
        stderrs.append(err)
        assert launcher.returncode == 0, f"vhtui run failed:\n{err}"
        counters.append(int(out.strip().splitlines()[-1]))
    assert sorted(counters) == list(range(1, FLOOD_RUNS + 1))

    listings: list[subprocess.CompletedProcess[str]] = []
    done = threading.Event()

    def list_in_a_loop() -> None:
        while not done.is_set():
            listings.append(project.vhtui("exec", "list", check=False, **env))

    lister = threading.Thread(target=list_in_a_loop, daemon=True)
    lister.start()
    try:
        while True:
            result = project.vhtui("exec", "list", "--json", check=False, **env)
            listings.append(result)
            assert result.returncode == 0, f"vhtui exec list --json failed:\n{result.stderr}"
            statuses = {e["counter"]: e["status"] for e in json.loads(result.stdout)["results"]}
            if len(statuses) == FLOOD_RUNS and all(s in FINAL for s in statuses.values()):
                break
            assert time.monotonic() < deadline, f"not all final after 240 s: {statuses}"
            time.sleep(0.2)
    finally:
        done.set()
        lister.join(timeout=60)

    assert len(listings) >= 2
    stderrs += [result.stderr for result in listings]
    logs = sorted((project.home / "executions").glob("*/supervisor.log"))
    assert len(logs) == FLOOD_RUNS
    stderrs += [log.read_text(errors="replace") for log in logs]
    locked = [text for text in stderrs if "database is locked" in text]
    assert not locked, locked[0]
    for result in listings:
        assert result.returncode == 0, f"vhtui exec list failed:\n{result.stderr}"
    intervals = []
    for counter in counters:
        doc = project.info(counter)
        row = _row(project, counter)
        intervals.append((row["started_at"], row["ended_at"]))
        assert doc["status"] == "complete", (counter, doc["status"], doc["status_detail"])
        assert doc["metadata_count"] == FLOOD_EVENTS
        assert doc["metadata"] == {"i": FLOOD_EVENTS - 1, "loss": 1.0 / FLOOD_EVENTS}
        execution_id = row["id"]
        blocks = _query(project, "SELECT first_seq, count FROM metadata WHERE execution_id = ? ORDER BY first_seq",
                        (execution_id,))
        # stored as blocks of events that arrived together: contiguous, nothing missing or doubled
        assert [b[0] for b in blocks] == [sum(c for _, c in blocks[:i]) for i in range(len(blocks))]
        assert sum(c for _, c in blocks) == FLOOD_EVENTS

    # they did contend: at some moment all of them were running
    overlap = max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)
    assert overlap == FLOOD_RUNS, f"the executions did not all run at once: {intervals}"


# -- 4. stop and failure ----------------------------------------------------------------------
IGNORE_TERM_YAML = """\
- step:
    name: stubborn-sh
    image: busybox
    command:
      - trap 'echo ignoring SIGTERM; terminated=1' TERM
      - printf 'before stop\\n' > "$VH_OUTPUTS_DIR/partial.txt"
      - echo started
      - terminated=0; ticks=0
      - while [ $ticks -lt 600 ]; do sleep 0.1 || true; if [ $terminated = 1 ]; then ticks=$((ticks + 1)); echo "tick $ticks"; fi; done
      - echo finished
- step:
    name: stubborn-py
    image: python:3.11
    command: python stubborn.py
- step:
    name: failing
    image: python:3.11
    command: python failing.py
"""

FAILING_PY = """\
import os, sys

with open(os.path.join(os.environ["VH_OUTPUTS_DIR"], "partial.txt"), "w") as f:
    f.write("written before failing\\n")
print("about to fail")
sys.exit(3)
"""


def _write_stop_project(project: Project) -> None:
    project.write("valohai.yaml", IGNORE_TERM_YAML)
    project.write("stubborn.py", STUBBORN)
    project.write("failing.py", FAILING_PY)


@pytest.mark.parametrize("step", ["stubborn-sh", "stubborn-py"])
def test_stop_kills_a_command_that_ignores_sigterm_after_the_grace_period(project: Project, step: str) -> None:
    _write_stop_project(project)
    counter = project.run(step, *CURRENT)
    project.wait_for_status(counter, "started", timeout=30)
    poll("the command to say it started", lambda: "started" in _stdout_lines(project, counter), timeout=30)

    result = project.vhtui("exec", "stop", str(counter))  # it returns once the execution is final
    assert result.stdout.strip() == f"#{counter} stopped"

    doc = project.info(counter)
    assert doc["status"] == "stopped", doc["status_detail"]
    assert_given_its_grace_then_killed(_stdout_lines(project, counter))
    row = _row(project, counter)
    pgid = int(json.loads(row["runner_state"])["pgid"])
    poll("the command's process group to be gone", lambda: not _group_alive(pgid), timeout=5)

    outputs = _outputs(doc)
    assert set(outputs) == {"partial.txt"}
    assert outputs["partial.txt"]["checksums"]["sha256"] == _sha256(b"before stop\n")


def test_failing_command_ends_error_with_exit_code_and_keeps_its_outputs(project: Project) -> None:
    _write_stop_project(project)
    counter = project.run("failing", *CURRENT)
    doc = project.wait(counter, timeout=30)
    assert doc["status"] == "error"
    assert doc["exit_code"] == 3
    assert doc["status_detail"] and "3" in doc["status_detail"]
    assert "about to fail" in _stdout_lines(project, counter)
    outputs = _outputs(doc)
    assert set(outputs) == {"partial.txt"}
    assert outputs["partial.txt"]["checksums"]["sha256"] == _sha256(b"written before failing\n")


# -- 5. time-limit and no-output-timeout ------------------------------------------------------
LIMITS_YAML = """\
- step:
    name: too-long
    image: busybox
    time-limit: 2
    command:
      - echo begin
      - sleep 60
      - echo end
- step:
    name: too-quiet
    image: busybox
    no-output-timeout: 2
    command:
      - echo once
      - sleep 60
      - echo end
"""


def test_time_limit_ends_the_execution_as_error(project: Project) -> None:
    project.write("valohai.yaml", LIMITS_YAML)
    counter = project.run("too-long", *CURRENT)
    doc = project.wait(counter, timeout=50)  # a hang guard: the command's natural end is 60 s away
    assert doc["status"] == "error"
    assert doc["status_detail"] and "time limit" in doc["status_detail"].lower(), doc["status_detail"]
    assert doc["time_limit"] == 2
    assert doc["duration"] >= 2  # not before its limit (a lower bound: load only makes it longer)
    assert _stdout_lines(project, counter) == ["begin"]  # cut before its natural end


def test_no_output_timeout_ends_the_execution_as_error(project: Project) -> None:
    project.write("valohai.yaml", LIMITS_YAML)
    counter = project.run("too-quiet", *CURRENT)
    doc = project.wait(counter, timeout=50)  # a hang guard: the command's natural end is 60 s away
    assert doc["status"] == "error"
    assert doc["status_detail"] and "no output" in doc["status_detail"].lower(), doc["status_detail"]
    assert doc["no_output_timeout"] == 2
    assert doc["duration"] >= 2  # not before its limit (a lower bound: load only makes it longer)
    assert _stdout_lines(project, counter) == ["once"]  # cut before its natural end


# -- 6. stop-condition ------------------------------------------------------------------------
STOP_CONDITION_YAML = """\
- step:
    name: converge
    image: python:3.11
    command: python converge.py
    stop-condition: loss < 0.5
"""

CONVERGE_PY = """\
import json, time

for i in range(40):  # 8 s if nothing stops it; loss goes below 0.5 at step 11 (~2.2 s)
    print(json.dumps({"step": i, "loss": round(1.0 - 0.05 * i, 4)}))
    time.sleep(0.2)
print("reached the end")
"""


def test_stop_condition_stops_the_execution_early(project: Project) -> None:
    project.write("valohai.yaml", STOP_CONDITION_YAML)
    project.write("converge.py", CONVERGE_PY)
    counter = project.run("converge", *CURRENT)
    doc = project.wait(counter, timeout=30)
    assert doc["status"] == "stopped", doc["status_detail"]
    assert doc["status_detail"] and "stop condition" in doc["status_detail"].lower(), doc["status_detail"]
    assert doc["stop_condition"] == "loss < 0.5"

    events = json.loads(project.vhtui("exec", "metadata", str(counter), "--json").stdout)
    steps = [e["step"] for e in events]
    assert steps == list(range(len(steps)))
    assert any(e["loss"] < 0.5 for e in events), "stopped before the condition held"
    assert steps[-1] < 39, "the command ran to its end"
    assert "reached the end" not in _stdout_lines(project, counter)
    assert doc["metadata"]["loss"] < 0.5
