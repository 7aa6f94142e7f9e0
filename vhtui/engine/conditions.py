"""Expressions on metadata (`stop-condition`, pipeline `if`s), evaluated with leval, never eval."""

from __future__ import annotations

from typing import Any

from leval.excs import NoSuchValue
from leval.simple import simple_eval


def metadata_values(summary: dict[str, Any]) -> dict[str | tuple[str, ...], Any]:
    """Names an expression may use: `loss`, and `val.loss` for a key spelled with dots."""
    values: dict[str | tuple[str, ...], Any] = {}
    for key, value in summary.items():
        values[key] = value
        if "." in key:
            values[tuple(key.split("."))] = value
    return values


def evaluate(expression: str, summary: dict[str, Any]) -> bool:
    """True when the expression holds; False while a metric it names has not been reported yet."""
    try:
        return bool(simple_eval(expression, values=metadata_values(summary), max_time=0.1))
    except NoSuchValue:
        return False
    except Exception:  # noqa: BLE001 (type errors on odd metric values count as "not yet")
        return False
