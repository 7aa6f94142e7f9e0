"""valohai-yaml without paying for jsonschema until something is validated.

valohai-yaml imports jsonschema (with referencing, attrs and every bundled metaschema: about half
the cost of a cold `vhtui run`) when any of its modules is imported, though only validating a file
uses it. A launch of a file that passed validation before (see `project.parse_config`) validates
nothing, so `install()` lets valohai-yaml import against stand-ins for the three names it takes
from jsonschema at import time, each of which imports the real jsonschema the moment it is used.
The stand-ins leave `sys.modules` straight away, so any later `import jsonschema` is the real one.

valohai-yaml's own lint tests run through this (tests/test_lint.py on the whole corpus), as does a
test that a known file loads without jsonschema and an unknown one is still validated.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _ValidationError(Exception):
    """Stands in for jsonschema.ValidationError where valohai-yaml names it in a type alias."""


class _Draft202012Validator:
    """Stands in for the class; calling it or its `check_schema` uses the real one."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from jsonschema import Draft202012Validator

        return Draft202012Validator(*args, **kwargs)

    @staticmethod
    def check_schema(schema: Any) -> None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema)


def _relevance(error: Any) -> Any:
    from jsonschema.exceptions import relevance

    return relevance(error)


def install() -> None:
    """Import valohai-yaml's modules against the stand-ins, unless jsonschema or valohai-yaml is
    already imported (then there is nothing to save)."""
    if "jsonschema" in sys.modules or "valohai_yaml" in sys.modules:
        return
    stand_in = types.ModuleType("jsonschema")
    exceptions = types.ModuleType("jsonschema.exceptions")
    stand_in.ValidationError = exceptions.ValidationError = _ValidationError  # type: ignore[attr-defined]
    stand_in.Draft202012Validator = _Draft202012Validator  # type: ignore[attr-defined]
    stand_in.exceptions = exceptions  # type: ignore[attr-defined]
    exceptions.relevance = _relevance  # type: ignore[attr-defined]
    sys.modules["jsonschema"] = stand_in
    sys.modules["jsonschema.exceptions"] = exceptions
    try:
        import valohai_yaml.lint  # noqa: F401  (the modules that take names from jsonschema)
        import valohai_yaml.objs  # noqa: F401
        import valohai_yaml.validation  # noqa: F401
    finally:
        del sys.modules["jsonschema"], sys.modules["jsonschema.exceptions"]
