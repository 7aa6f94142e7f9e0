"""The small text files users hand vhtui (valohai.yaml, parameter files, settings): read so that
a bad one is one clear line, never a hang, a traceback or all the memory.

Only regular files are read (a FIFO would block, `/dev/zero` never ends), up to a size cap, as
UTF-8. YAML is composed first and checked before it is built: nesting too deep for the parser,
and aliases that expand into more nodes than any real file has (a "billion laughs" file is a few
hundred bytes that stand for billions of values), are refused by name.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from vhtui.errors import VhtuiError

MAX_BYTES = 16 << 20
MAX_NODES = 1_000_000  # values a YAML file may stand for, its aliases expanded


def read_text(path: Path, what: str = "") -> str:
    """A user's text file, whole, or one line saying why not (`what` names it: "parameter file")."""
    name = f"{what} {path}" if what else str(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise VhtuiError(f"cannot read {name}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise VhtuiError(f"{name} is not a regular file")
    if info.st_size > MAX_BYTES:
        raise VhtuiError(f"{name} is {info.st_size >> 20} MB; the most that is read is {MAX_BYTES >> 20} MB")
    try:
        return path.read_bytes()[:MAX_BYTES].decode("utf-8")
    except OSError as exc:
        raise VhtuiError(f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise VhtuiError(f"{name} is not UTF-8 text") from None


def load_yaml(text: str, where: str) -> Any:
    """YAML's value (PyYAML's safe loader), refusing nesting too deep and aliases that expand too far."""
    import yaml

    try:
        return _checked_document(text, where, construct=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise VhtuiError(f"{where}: YAML syntax error{at}: {problem}") from None


def check_yaml(text: str, where: str) -> None:
    """Refuse what would hang or exhaust a reader (nesting, alias bombs); a plain syntax error is left
    for the caller's own reader to describe (valohai-yaml's linter has its own words for it)."""
    import yaml

    try:
        _checked_document(text, where, construct=False)
    except yaml.YAMLError:
        pass


def _checked_document(text: str, where: str, construct: bool) -> Any:
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise VhtuiError(f"{where}: its aliases expand to over {MAX_NODES:,} values: refused")
        return loader.construct_document(node) if construct else None
    except RecursionError:
        raise VhtuiError(f"{where}: too deeply nested to read") from None
    finally:
        loader.dispose()


def expanded_size(root: Any) -> int:
    """How many nodes the document stands for with every alias expanded (a shared node counts each
    time it is used), without expanding anything: each node's size is computed once."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, not yet sized: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            open_nodes.discard(id(node))
            if sizes[id(node)] > MAX_NODES:
                return sizes[id(node)]
            continue
        if id(node) in open_nodes:
            return MAX_NODES + 1  # an alias inside what it names: it never ends
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
