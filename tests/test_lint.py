"""`vhtui lint` against valohai-yaml's own linter and its official corpus; step matching; YAML syntax errors.

The corpus is read in place from CORPUS (never copied).  Every corpus file is checked three ways:

* in-process, `vhtui lint FILE` (through `vhtui.cli.main`) against `valohai_yaml.__main__.main` on the same
  file, plain and with `--strict-warnings`: identical stdout and exit code;
* against the syrupy snapshot `tests/test_validation.ambr` that valohai-yaml's own test-suite keeps;
* as real subprocesses: one `python -m vhtui lint` per error/warning file, and one whole-folder run of both
  `python -m vhtui lint` and `python -m valohai_yaml` per corpus folder, plain and strict.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import CORPUS, Project

FOLDERS = {
    "examples": CORPUS / "examples",
    "valid": CORPUS / "tests" / "valid_examples",
    "error": CORPUS / "tests" / "error_examples",
    "warning": CORPUS / "tests" / "warning_examples",
}
SNAPSHOT = CORPUS / "tests" / "test_validation.ambr"
SNAPSHOT_TEST = {"error": "test_bad_examples_cli", "warning": "test_warning_examples_cli"}
SEPARATOR = "-" * 60
SUMMARY_RE = re.compile(r"^\*\*\* (\d+) errors, (\d+) warnings$")


def _files(kind: str) -> list[Path]:
    return sorted(FOLDERS[kind].glob("*.yaml")) if FOLDERS[kind].is_dir() else []


ALL_FILES = [(kind, path) for kind in FOLDERS for path in _files(kind)]
BAD_FILES = [(kind, path) for kind, path in ALL_FILES if kind in SNAPSHOT_TEST]
GOOD_FILES = [(kind, path) for kind, path in ALL_FILES if kind not in SNAPSHOT_TEST]


def _ids(items: list[tuple[str, Path]]) -> list[str]:
    # Names are unique within a folder but not across (edge-merge-mode.yaml is in examples and valid_examples).
    return [f"{kind}/{path.name}" for kind, path in items]


# -- snapshot ---------------------------------------------------------------------------------------
def parse_snapshot(path: Path) -> dict[tuple[str, str], list[str]]:
    """{(test name, file name): body lines}; bodies are between `'''` lines and indented by two spaces."""
    entries: dict[tuple[str, str], list[str]] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"# name: (\w+)\[(.+)\]", lines[i])
        if not m:
            i += 1
            continue
        assert lines[i + 1] == "  '''", f"unexpected snapshot layout at line {i + 2}"
        body, i = [], i + 2
        while lines[i] != "  '''":
            assert lines[i] == "" or lines[i].startswith("  ") or lines[i].strip() == "", lines[i]
            body.append(lines[i][2:])
            i += 1
        entries[(m.group(1), m.group(2))] = body
        i += 1
    return entries


SNAPSHOTS = parse_snapshot(SNAPSHOT) if SNAPSHOT.is_file() else {}


def normalise_python_wording(line: str) -> str:
    """Python's SyntaxError wording changed in 3.10: the snapshot was recorded on an older Python
    ("EOL while scanning string literal") while 3.10+ says "unterminated string literal (detected at
    line N)".  valohai-yaml passes that text through verbatim (task-stop-condition.yaml), so map both
    spellings to one placeholder, on both sides of the comparison."""
    line = line.replace("EOL while scanning string literal", "<unterminated string literal>")
    return re.sub(r"unterminated string literal \(detected at line \d+\)", "<unterminated string literal>", line)


def significant(lines: list[str]) -> Counter[str]:
    """The multiset of message lines and the summary line; separators and `>>>` headers are ignored
    (the snapshot sorts some entries' lines, so only the multiset is comparable)."""
    keep = Counter()
    for line in lines:
        if line.startswith(("error:", "warning:", "hint:")) or SUMMARY_RE.match(line):
            keep[normalise_python_wording(line)] += 1
    return keep


def snapshot_counts(kind: str, name: str) -> tuple[int, int]:
    body = SNAPSHOTS[(SNAPSHOT_TEST[kind], name)]
    (summary,) = [SUMMARY_RE.match(line) for line in body if SUMMARY_RE.match(line)]
    return int(summary.group(1)), int(summary.group(2))


def expected_counts(kind: str, name: str) -> tuple[int, int]:
    return snapshot_counts(kind, name) if kind in SNAPSHOT_TEST else (0, 0)


def expected_exit(errors: int, warnings: int, strict: bool) -> int:
    return 1 if errors or (strict and warnings) else 0


# -- running the linters ----------------------------------------------------------------------------
def run_inprocess(main, argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    out = io.StringIO()
    with monkeypatch.context() as m:
        m.chdir(cwd)
        with contextlib.redirect_stdout(out):
            rc = main(argv)
    return rc, out.getvalue()


def run_cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONIOENCODING="utf-8"),
    )


def vhtui_lint(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("vhtui", ["lint", *args], cwd)


def valohai_lint(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("valohai_yaml", ["--no-colors", *args], cwd)


def assert_layout(stdout: str, names_with_messages: list[str], errors: int, warnings: int) -> None:
    """`>>> FILE` per file with messages, `TYPE: MESSAGE` + 60 dashes per message, one summary line."""
    lines = stdout.splitlines()
    if not errors and not warnings and not names_with_messages:
        assert stdout == ""
        return
    assert "\x1b[" not in stdout, "ANSI colours without a TTY"
    assert lines[-1] == f"*** {errors} errors, {warnings} warnings"
    assert sum(1 for line in lines if SUMMARY_RE.match(line)) == 1
    assert [line[4:] for line in lines if line.startswith(">>> ")] == names_with_messages
    body = [line for line in lines[:-1] if not line.startswith(">>> ")]
    assert body[1::2] == [SEPARATOR] * (len(body) // 2)
    messages = body[0::2]
    assert all(line.startswith(("error: ", "warning: ", "hint: ")) for line in messages), messages
    assert sum(line.startswith("error: ") for line in messages) == errors
    assert sum(line.startswith("warning: ") for line in messages) == warnings


# -- the corpus is there and the snapshot covers it -------------------------------------------------
def test_corpus_present_and_snapshot_matches_folders() -> None:
    assert CORPUS.is_dir(), f"corpus missing at {CORPUS}"
    assert len(_files("examples")) >= 30 and len(_files("valid")) >= 4
    assert len(_files("error")) >= 18 and len(_files("warning")) >= 8
    for kind, test in SNAPSHOT_TEST.items():
        in_snapshot = {name for t, name in SNAPSHOTS if t == test}
        assert in_snapshot == {p.name for p in _files(kind)}, kind
    # every bad file yields something; the one "warning" example that actually errors is in the snapshot as such
    for kind, path in BAD_FILES:
        assert sum(snapshot_counts(kind, path.name)) > 0, path.name
    assert snapshot_counts("warning", "override-with-extra-fields-warning.yaml") == (1, 0)


# -- every corpus file: vhtui == valohai-yaml, in process -------------------------------------------
@pytest.mark.parametrize(("kind", "path"), ALL_FILES, ids=_ids(ALL_FILES))
def test_lint_same_as_valohai_yaml(kind: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from valohai_yaml.__main__ import main as valohai_main

    from vhtui.cli import main as vhtui_main

    errors, warnings = expected_counts(kind, path.name)
    for strict in (False, True):
        flag = ["--strict-warnings"] if strict else []
        ours = run_inprocess(vhtui_main, ["lint", *flag, path.name], path.parent, monkeypatch)
        theirs = run_inprocess(valohai_main, ["--no-colors", *flag, path.name], path.parent, monkeypatch)
        assert ours == theirs, f"strict={strict}"
        assert ours[0] == expected_exit(errors, warnings, strict), f"strict={strict}"
    assert_layout(ours[1], [path.name] if errors or warnings else [], errors, warnings)


# -- error/warning files: real `python -m vhtui lint` against the snapshot --------------------------
@pytest.mark.parametrize(("kind", "path"), BAD_FILES, ids=_ids(BAD_FILES))
def test_lint_cli_matches_snapshot(kind: str, path: Path, vh_home: Path) -> None:
    body = SNAPSHOTS[(SNAPSHOT_TEST[kind], path.name)]
    errors, warnings = snapshot_counts(kind, path.name)
    strict_variants = (False, True) if warnings else (False,)
    for strict in strict_variants:
        result = vhtui_lint(["--strict-warnings", path.name] if strict else [path.name], path.parent)
        assert result.returncode == expected_exit(errors, warnings, strict), (strict, result.stdout, result.stderr)
        assert result.stderr == ""
        assert significant(result.stdout.splitlines()) == significant(body)
        assert f">>> {path.name}" in body and result.stdout.startswith(f">>> {path.name}\n")
        assert_layout(result.stdout, [path.name], errors, warnings)


def test_python_syntax_error_wording_is_normalised() -> None:
    """The normalisation above must actually bite: without it task-stop-condition.yaml would differ."""
    body = SNAPSHOTS[("test_bad_examples_cli", "task-stop-condition.yaml")]
    recorded = next(line for line in body if line.startswith("error:"))
    assert "EOL while scanning string literal" in recorded
    with pytest.raises(SyntaxError) as info:
        compile("'", "<expression>", "eval")  # what valohai-yaml does with the stop-condition
    current = str(info.value.msg)
    assert normalise_python_wording(recorded.replace("EOL while scanning string literal", current)) == \
        normalise_python_wording(recorded)


# -- whole folders through both real CLIs -----------------------------------------------------------
@pytest.mark.parametrize("kind", list(FOLDERS))
def test_lint_cli_folder_same_as_valohai_yaml(kind: str, vh_home: Path) -> None:
    paths = _files(kind)
    names = [p.name for p in paths]
    counts = [expected_counts(kind, n) for n in names]
    errors, warnings = sum(e for e, _ in counts), sum(w for _, w in counts)
    for strict in (False, True):
        args = (["--strict-warnings"] if strict else []) + names
        ours, theirs = vhtui_lint(args, FOLDERS[kind]), valohai_lint(args, FOLDERS[kind])
        assert theirs.returncode in (0, 1), theirs.stderr
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), f"strict={strict}"
        assert ours.returncode == expected_exit(errors, warnings, strict)
        assert ours.stderr == ""
        assert_layout(ours.stdout, [n for n, c in zip(names, counts) if sum(c)], errors, warnings)


# -- several files in one call ----------------------------------------------------------------------
def test_lint_several_files_add_counts(vh_home: Path) -> None:
    tests_dir = CORPUS / "tests"
    files = [
        ("error", "invalid-edge-parts.yaml"),
        ("warning", "nonsensical-task-bits.yaml"),
        ("valid", "edge-merge-mode.yaml"),
        ("error", "step-missing-required-properties.yaml"),
        ("warning", "duplicate_step_names.yaml"),
    ]
    args = [f"{FOLDERS[k].name}/{n}" for k, n in files]
    errors = sum(expected_counts(k, n)[0] for k, n in files)
    warnings = sum(expected_counts(k, n)[1] for k, n in files)
    assert (errors, warnings) == (5, 4)
    result = vhtui_lint(args, tests_dir)
    assert result.returncode == 1 and result.stderr == ""
    assert_layout(result.stdout, [a for a, (k, _) in zip(args, files) if k != "valid"], errors, warnings)
    theirs = valohai_lint(args, tests_dir)
    assert (result.returncode, result.stdout) == (theirs.returncode, theirs.stdout)


def test_lint_several_warning_files_strict(vh_home: Path) -> None:
    folder = FOLDERS["warning"]
    names = ["ineffective-optional-on-flag.yaml", "targetless-pipeline-params.yaml", "nonsensical-task-bits.yaml"]
    plain = vhtui_lint(names, folder)
    assert plain.returncode == 0
    assert plain.stdout.splitlines()[-1] == "*** 0 errors, 5 warnings"
    assert_layout(plain.stdout, names, 0, 5)
    strict = vhtui_lint(["--strict-warnings", *names], folder)
    assert strict.returncode == 1 and strict.stdout == plain.stdout


# -- missing files and missing projects -------------------------------------------------------------
def test_lint_missing_file(tmp_path: Path, vh_home: Path) -> None:
    result = vhtui_lint(["missing.yaml"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ">>> missing.yaml"
    assert lines[1].startswith("error: ") and "No such file" in lines[1]
    assert lines[-1] == "*** 1 errors, 0 warnings"


def test_lint_missing_file_among_others(tmp_path: Path, vh_home: Path) -> None:
    warn = FOLDERS["warning"] / "duplicate_step_names.yaml"
    good = FOLDERS["examples"] / "example1.yaml"
    result = vhtui_lint([str(good), "missing.yaml", str(warn)], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert_layout(result.stdout, ["missing.yaml", str(warn)], 1, 1)


def test_lint_without_project(tmp_path: Path, vh_home: Path) -> None:
    result = vhtui_lint([], tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "valohai.yaml" in result.stderr


def test_lint_defaults_to_project_config(project: Project) -> None:
    project.write("valohai.yaml", """\
        - step:
            name: train
            image: python:3.11
            command: python train.py
            parameters:
              - name: lr
                type: float
                default: 0.1
                max: 0.01
        """)
    (project.root / "sub").mkdir()
    result = run_cli("vhtui", ["lint"], project.root / "sub")
    assert result.returncode == 0, result.stderr
    config = str((project.root / "valohai.yaml").resolve())
    assert_layout(result.stdout, [config], 0, 1)
    assert "greater than the maximum" in result.stdout
    assert run_cli("vhtui", ["lint", "--strict-warnings"], project.root).returncode == 1


# -- step matching ----------------------------------------------------------------------------------
STEPS_YAML = """\
- step:
    name: train
    image: python:3.11
    command: python train.py
- step:
    name: train-large
    image: python:3.11
    command: python train.py --large
- step:
    name: Evaluate
    image: python:3.11
    command: python eval.py
- step:
    name: export-model
    image: python:3.11
    command: python export.py model
- step:
    name: export-data
    image: python:3.11
    command: python export.py data
"""


@pytest.fixture
def steps_config(tmp_path: Path):
    from vhtui.project import load_config

    path = tmp_path / "valohai.yaml"
    path.write_text(STEPS_YAML)
    return load_config(path)


@pytest.mark.parametrize(("query", "expected"), [
    ("train", "train"),              # exact beats being a prefix of train-large
    ("train-large", "train-large"),
    ("Evaluate", "Evaluate"),
    ("eval", "Evaluate"),            # case-insensitive prefix
    ("EVAL", "Evaluate"),
    ("evaluate", "Evaluate"),
    ("train-l", "train-large"),
    ("TRAIN-", "train-large"),
    ("export-m", "export-model"),
    ("Export-D", "export-data"),
])
def test_match_step(steps_config, query: str, expected: str) -> None:
    from vhtui.project import match_step

    step = match_step(steps_config, query)
    assert step.name == expected
    assert step is steps_config.steps[expected]


@pytest.mark.parametrize(("query", "candidates"), [
    ("export", ["export-data", "export-model"]),
    ("EXP", ["export-data", "export-model"]),
    ("tr", ["train", "train-large"]),
    ("Train", ["train", "train-large"]),  # no case-insensitive exact match, as in valohai-cli's match_step
])
def test_match_step_ambiguous(steps_config, query: str, candidates: list[str]) -> None:
    from vhtui.errors import NotFound, VhtuiError
    from vhtui.project import match_step

    with pytest.raises(VhtuiError) as info:
        match_step(steps_config, query)
    assert not isinstance(info.value, NotFound)
    message = str(info.value)
    assert "ambiguous" in message and repr(query) in message
    assert all(c in message for c in candidates)
    assert "Evaluate" not in message


@pytest.mark.parametrize("query", ["deploy", "trainx", "xtrain", "valuate"])
def test_match_step_not_found(steps_config, query: str) -> None:
    from vhtui.errors import NotFound
    from vhtui.project import match_step

    with pytest.raises(NotFound) as info:
        match_step(steps_config, query)
    message = str(info.value)
    assert repr(query) in message
    assert all(name in message for name in ("train", "train-large", "Evaluate", "export-model", "export-data"))


# -- YAML syntax errors -----------------------------------------------------------------------------
SYNTAX_ERRORS = [
    pytest.param("- step:\n    name: train\n    image: python: 3.11\n    command: echo hi\n", 3, 18,
                 id="mapping-values"),
    pytest.param("- step:\n    name: train\n\timage: python\n", 3, 1, id="tab"),
    pytest.param("- step:\n    name: train\n    image: python:3.11\n    command: [echo, hi\n", 5, 1,
                 id="unclosed-flow"),
]


@pytest.mark.parametrize(("text", "line", "column"), SYNTAX_ERRORS)
def test_load_config_syntax_error(tmp_path: Path, text: str, line: int, column: int) -> None:
    from vhtui.errors import VhtuiError
    from vhtui.project import load_config

    path = tmp_path / "valohai.yaml"
    path.write_text(text)
    with pytest.raises(VhtuiError) as info:
        load_config(path)
    message = str(info.value)
    assert f"line {line}, column {column}" in message
    assert "\n" not in message


def test_load_config_corpus_indentation_error() -> None:
    """Same position as valohai-yaml's linter reports in the snapshot for this file."""
    from vhtui.errors import VhtuiError
    from vhtui.project import load_config

    body = SNAPSHOTS[("test_bad_examples_cli", "invalid-YAML-indentation.yaml")]
    assert "error: Indentation Error at line 3, column 10" in body
    with pytest.raises(VhtuiError) as info:
        load_config(FOLDERS["error"] / "invalid-YAML-indentation.yaml")
    assert "line 3, column 10" in str(info.value)


@pytest.mark.parametrize(("text", "line", "column"), SYNTAX_ERRORS)
def test_run_with_yaml_syntax_error(project: Project, text: str, line: int, column: int) -> None:
    (project.root / "valohai.yaml").write_text(text)
    result = project.vhtui("run", "x", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"line {line}, column {column}" in lines[0]
    assert result.stdout == ""
