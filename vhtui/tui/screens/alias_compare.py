"""Two aliases of a deployment side by side: what each serves, how it is doing, how they answer.

Each side shows the version, its code, each file with its datum and the execution that produced it
(`t`/`T` open the left/right one's training execution), live request rate, error rate and latency
percentiles with a per-second latency sparkline, and a chart of the endpoint's `vh_metadata` keys.
Below, one request is sent to both through the router and both answers are shown with their
differing keys highlighted and each latency; `m` mirrors the left alias's traffic to the right one
and the running agreement rate appears in the title line.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Sparkline, Static

from vhtui.deploy.compare import compare_aliases, differences, send_to_both
from vhtui.deploy.metrics import metadata_series
from vhtui.tui.series import Series
from vhtui.tui.messages import StoreChanged
from vhtui.tui.widgets.metric_chart import MetricChart
from vhtui.tui.focus import focus_now, typing
from vhtui.tui.workbench import workbench


def side_text(side: dict[str, Any]) -> Text:
    """The summary of one alias: version, code, and per endpoint its files, traffic and metadata."""
    text = Text()
    text.append(f"{side['alias']}", style="bold")
    text.append(f" → {side['version']}\n")
    code = side["code_version"]
    text.append("code ", style="dim")
    text.append((code["commit"][:12] + (" +dirty" if code.get("dirty") else "")) if code.get("type") == "git"
                else f"adhoc {code.get('sha256', '')[:12]}")
    text.append("\n")
    for endpoint in side["endpoints"]:
        status = endpoint["status"]
        text.append(f"{endpoint['name']} ", style="bold")
        text.append(status, style="green" if status == "running" else "red" if status == "crashed" else "yellow")
        text.append("\n")
        for file in endpoint["files"]:
            producer = file["execution"]
            text.append(f"  {file['name']} ", style="dim")
            text.append(f"{file['datum'][8:16]} {file['datum_name']}")
            if producer:
                metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in list(producer["metrics"].items())[:2])
                text.append(f"  ← #{producer['counter']} {producer['step']}", style="cyan")
                text.append(f" {metrics}", style="dim")
            text.append("\n")
        r = endpoint["requests"]
        text.append(f"  {r['rate']:.1f} req/s  errors {r['error_rate']:.1%}  ")
        text.append("p50 " + (f"{r['p50_ms']:.1f}" if r["p50_ms"] is not None else "—"))
        text.append("  p99 " + (f"{r['p99_ms']:.1f}" if r["p99_ms"] is not None else "—") + " ms")
        text.append(f"  total {r['requests']}\n", style="dim")
        if endpoint["metadata"]:
            text.append("  " + "  ".join(f"{k}={v}" for k, v in endpoint["metadata"].items()) + "\n", style="magenta")
    return text


def answer_text(answer: dict[str, Any], differing: list[str]) -> Text:
    """One answer, its status and latency, the lines holding differing keys highlighted."""
    text = Text()
    text.append(f"{answer['alias']}: ", style="bold")
    text.append(f"{answer['status']}", style="green" if answer["status"] == 200 else "red")
    text.append(f"  {answer['latency_ms']:.1f} ms\n", style="dim")
    try:
        body = json.dumps(json.loads(answer["body"]), indent=2)
    except ValueError:
        body = answer["body"]
    leaves = {d.split(".")[-1].split("[")[0] for d in differing}
    for number, line in enumerate(body.splitlines(), start=1):
        key = line.strip().split(":", 1)[0].strip('"')
        hot = key in leaves or f"line {number}" in differing
        text.append(line + "\n", style="bold yellow on #3a3000" if hot else "")
    return text


class AliasCompareScreen(Screen[None]):
    AUTO_FOCUS = ""  # nothing: keys act on the screen; `/` moves to the request field
    BINDINGS = [
        Binding("escape", "back", "Back", id="alias_compare.back"),
        Binding("t", "open_execution(0)", "Left's training run", id="alias_compare.left_execution"),
        Binding("T", "open_execution(1)", "Right's training run", id="alias_compare.right_execution"),
        Binding("m", "toggle_mirror", "Mirror left→right", id="alias_compare.mirror"),
        Binding("slash", "focus_request", "Request", id="alias_compare.request", priority=True),
    ]
    DEFAULT_CSS = """
    AliasCompareScreen #sides { height: 1fr; }
    AliasCompareScreen .side { width: 1fr; border: round $panel-lighten-2; padding: 0 1; }
    AliasCompareScreen .side-summary { height: auto; }
    AliasCompareScreen Sparkline { height: 2; margin-bottom: 1; }
    AliasCompareScreen MetricChart { height: 1fr; min-height: 6; }
    AliasCompareScreen #request-box { height: auto; max-height: 14; }
    AliasCompareScreen .answer { width: 1fr; height: auto; padding: 0 1; }
    AliasCompareScreen #mirror-line { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, project_id: int, deployment: str, left: str, right: str, now: float | None = None) -> None:
        super().__init__()
        self.project_id = project_id
        self.deployment = deployment
        self.aliases = [left, right]
        self.now = now
        self.doc: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="mirror-line")
        with Horizontal(id="sides"):
            for index in range(2):
                with Vertical(classes="side", id=f"side-{index}"):
                    yield Static(classes="side-summary", id=f"summary-{index}")
                    yield Sparkline([], id=f"latency-{index}")
                    yield MetricChart(id=f"chart-{index}")
        yield Input(placeholder="request path, e.g. /predict?x=0.5 (enter sends it to both)", id="request")
        with Horizontal(id="request-box"):
            yield Static(classes="answer", id="answer-0")
            yield Static(classes="answer", id="answer-1")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.deployment}: {self.aliases[0]} vs {self.aliases[1]}"
        for index, alias in enumerate(self.aliases):
            self.query_one(f"#side-{index}").border_title = alias
            self.query_one(f"#chart-{index}", MetricChart).x_label = "seconds"
        self._load()

    def on_store_changed(self, message: StoreChanged) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="alias-compare-load")
    def _load(self) -> None:
        ctx = workbench(self.app).ctx.with_new_connection()
        try:
            doc = compare_aliases(ctx, self.project_id, self.deployment, *self.aliases, now=self.now)
            charts = []
            for side in doc["sides"]:
                series = {}
                for endpoint in side["endpoints"]:
                    for key, (xs, ys) in metadata_series(ctx.db, endpoint["endpoint_id"]).items():
                        series[key] = Series(np.asarray(xs), np.asarray(ys))
                charts.append(series)
        except Exception as exc:  # noqa: BLE001 (shown, not raised: the screen stays usable)
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        finally:
            ctx.db.close()
        self.app.call_from_thread(self._show, doc, charts)

    def _show(self, doc: dict[str, Any], charts: list[dict[str, Series]]) -> None:
        self.doc = doc
        for index, side in enumerate(doc["sides"]):
            self.query_one(f"#summary-{index}", Static).update(side_text(side))
            latencies = [v for e in side["endpoints"] for v in e["requests"]["latency_series"]]
            self.query_one(f"#latency-{index}", Sparkline).data = latencies[-60:] or [0.0]
            self.query_one(f"#chart-{index}", MetricChart).set_series(charts[index])
        mirror = doc["mirror"]
        line = "mirroring off (m mirrors the left alias's traffic to the right one)"
        if mirror:
            agreement = f"{mirror['agreement']:.1%}" if mirror["agreement"] is not None else "no traffic yet"
            line = f"mirroring {mirror['source']} → {mirror['target']}: {mirror['mirrored']} requests, agreement {agreement}"
        self.query_one("#mirror-line", Static).update(line + "  ·  sparklines: p50 latency per second, last 60 s")

    # -- actions ---------------------------------------------------------------------------
    def action_open_execution(self, side: int) -> None:
        if self.doc is None:
            return
        for endpoint in self.doc["sides"][side]["endpoints"]:
            for file in endpoint["files"]:
                if file["execution"]:
                    workbench(self.app).open_execution(file["execution"]["id"])
                    return
        self.notify("no file of this version came from an execution", severity="warning")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`/` is a priority binding (vhtui.tui.focus): in a text field it is typed."""
        return not (action == "focus_request" and typing(self))

    def action_focus_request(self) -> None:
        focus_now(self.query_one("#request", Input))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.doc and event.value.strip():
            self._send(event.value.strip())

    @work(thread=True, exclusive=True, group="alias-compare-request")
    def _send(self, path: str) -> None:
        from vhtui.deploy.router import router_url, running_router

        ctx = workbench(self.app).ctx
        state = running_router(ctx)
        if state is None:
            self.app.call_from_thread(self.notify, "the router is not running: vhtui deploy start …", severity="error")
            return
        endpoint = self.doc["sides"][0]["endpoints"][0]["name"]  # type: ignore[index]
        answers = send_to_both(router_url(state), self.deployment, self.aliases, endpoint, path)
        self.app.call_from_thread(self.show_answers, answers)

    def show_answers(self, answers: list[dict[str, Any]]) -> None:
        differing = differences(answers[0]["body"], answers[1]["body"])
        for index, answer in enumerate(answers):
            self.query_one(f"#answer-{index}", Static).update(answer_text(answer, differing))

    def action_toggle_mirror(self) -> None:
        if self.doc is None:
            return
        mirroring = self.doc["mirror"] is not None and self.doc["mirror"]["source"] == self.aliases[0]
        self.set_mirror(None if mirroring else self.aliases[1])

    @work(thread=True, exclusive=True, group="mirror")
    def set_mirror(self, target: str | None) -> None:
        """Through deploy's own rules, as `vhtui deploy mirror` does; the router is told at once."""
        from vhtui.deploy.aliases import set_mirror
        from vhtui.deploy.versions import find_deployment
        from vhtui.errors import VhtuiError

        ctx = workbench(self.app).ctx.with_new_connection()
        try:
            set_mirror(ctx, find_deployment(ctx, self.project_id, self.deployment), self.aliases[0], target)
        except VhtuiError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        finally:
            ctx.db.close()
        self.app.call_from_thread(self.notify, f"mirroring {self.aliases[0]} → {target}" if target else "mirroring off")
        self.app.call_from_thread(self._load)

    def action_back(self) -> None:
        self.app.pop_screen()
