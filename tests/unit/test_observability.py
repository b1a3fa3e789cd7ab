"""infra/prometheus and infra/grafana agree with the metrics memstream exports.

An alert on a metric nobody exports never fires, and a dashboard panel on one stays
empty: neither error shows until the day it matters. These tests read the rules and
dashboards, parse every PromQL expression (``promql-parser``, the Rust parser of the
GreptimeDB project, a dev dependency; ``promtool`` too where it is installed) and check
every metric name against memstream's own Prometheus registry.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "alerts.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = ROOT / "infra" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
RUNBOOK = ROOT / "docs" / "operations.md"

# Packages whose metrics.py modules define memstream's metrics (imported, as a process
# that serves /metrics imports them, to fill the default registry).
METRIC_PACKAGES = ("streams", "projections", "services")
# Series Prometheus makes itself for every target, not exported by anyone.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
SEVERITIES = frozenset({"critical", "warning"})
ALERT_KEYS = frozenset({"alert", "expr", "for", "keep_firing_for", "labels", "annotations"})
RECORD_KEYS = frozenset({"record", "expr", "labels"})
# Prometheus' duration syntax: units in decreasing order, each at most once.
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
# Grafana's own variables, replaced by a value of their kind before parsing.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


# -- memstream's metrics ---------------------------------------------------------------


def exported_names() -> set[str]:
    """Every series name memstream's registry can expose, suffixes included.

    A labelled metric with no child yet has no samples, so the names are derived from
    each family's type (as the exposition format names them), not read off samples.
    """
    for package in METRIC_PACKAGES:
        for module in sorted((ROOT / package).rglob("metrics.py")):
            relative = module.relative_to(ROOT).with_suffix("")
            importlib.import_module(".".join(relative.parts))
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "stateset": ("",),
        "enum": ("",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "unknown": ("",),
    }
    return {
        family.name + suffix for family in REGISTRY.collect() for suffix in suffixes[family.type]
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (raises ValueError if it does not parse)."""
    names: set[str] = set()

    # walk() visits a range selector's vector selector too.
    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def unknown_metrics(exprs: Iterable[str], known: set[str]) -> dict[str, set[str]]:
    """expression -> the metric names in it that neither memstream nor Prometheus exports."""
    unknown = {}
    for expr in exprs:
        missing = metric_names(expr) - known - PROMETHEUS_SERIES
        if missing:
            unknown[expr] = missing
    return unknown


# -- reading the files -----------------------------------------------------------------


def rules_document(text: str | None = None) -> dict[str, Any]:
    document = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8") if text is None else text)
    assert isinstance(document, dict), "a rules file is a mapping with `groups`"
    return document


def rules(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in document["groups"]:
        yield from group["rules"]


def grafana_expr(expr: str) -> str:
    """A dashboard query as Prometheus receives it: Grafana's interval variables become
    durations (the others sit inside label matchers' strings, which parse as they are)."""
    return GRAFANA_INTERVALS.sub("5m", expr)


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels") or [])  # a collapsed row's panels


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard_panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            yield grafana_expr(target["expr"])
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.fullmatch(text.strip())
        # label_values(selector, label) is Grafana's, not PromQL: its selector is.
        yield match["selector"] if match and match["selector"] else grafana_expr(text)


@pytest.fixture(scope="module")
def known() -> set[str]:
    return exported_names()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return rules_document()


@pytest.fixture(scope="module", params=[p.name for p in DASHBOARDS])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (GRAFANA_DIR / "dashboards" / request.param).read_text(encoding="utf-8")
    )
    return loaded


# -- the rules file --------------------------------------------------------------------


def test_rules_file_has_the_prometheus_rule_format(document: dict[str, Any]) -> None:
    assert set(document) == {"groups"}, f"unexpected top-level keys {sorted(document)}"
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names)), f"group names repeat: {names}"
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"}, group["name"]
        assert group["rules"], f"group {group['name']} has no rules"
        if "interval" in group:
            assert DURATION.fullmatch(group["interval"]), group["name"]
        for rule in group["rules"]:
            keys = ALERT_KEYS if "alert" in rule else RECORD_KEYS
            assert set(rule) <= keys, f"{rule.get('alert') or rule.get('record')}: {set(rule)}"
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule


def test_every_alert_has_a_for_a_severity_and_its_annotations(
    document: dict[str, Any],
) -> None:
    alerts = [rule for rule in rules(document) if "alert" in rule]
    assert alerts
    names = [rule["alert"] for rule in alerts]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in alerts:
        name = rule["alert"]
        assert re.fullmatch(r"Memstream[A-Za-z0-9]+", name), name
        duration = rule.get("for")
        assert isinstance(duration, str) and duration and DURATION.fullmatch(duration), name
        promql_parser.parse_duration(duration)  # and Prometheus' parser agrees
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        # The runbook heading of an alert is its name (GitHub anchors are lower case).
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name


def test_every_rule_expression_parses_as_promql(document: dict[str, Any]) -> None:
    for rule in rules(document):
        try:
            promql_parser.parse(rule["expr"])
        except ValueError as exc:
            pytest.fail(f"{rule.get('alert') or rule.get('record')}: {exc}")


def test_every_metric_in_the_rules_is_exported_by_memstream(
    document: dict[str, Any], known: set[str]
) -> None:
    unknown = unknown_metrics((rule["expr"] for rule in rules(document)), known)
    assert not unknown, f"alerts on metrics memstream does not export: {unknown}"


def test_the_metric_check_reports_a_misspelt_metric(known: set[str]) -> None:
    # The check above must be able to fail: the real file with one name misspelt.
    text = RULES_FILE.read_text(encoding="utf-8")
    assert "memstream_append_failures_total" in text
    doctored = rules_document(
        text.replace("memstream_append_failures_total", "memstream_append_failure_total")
    )
    unknown = unknown_metrics((rule["expr"] for rule in rules(doctored)), known)
    assert set().union(*unknown.values()) == {"memstream_append_failure_total"}
    # and a histogram's family name is not a series of its own
    assert unknown_metrics(["rate(memstream_append_seconds[5m])"], known)
    assert not unknown_metrics(["rate(memstream_append_seconds_count[5m])"], known)


def test_runbook_has_a_heading_for_every_alert(document: dict[str, Any]) -> None:
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    missing = {
        rule["alert"]
        for rule in rules(document)
        if "alert" in rule and rule["annotations"]["runbook_url"].partition("#")[2] not in anchors
    }
    assert not missing, f"docs/operations.md has no heading for {sorted(missing)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_the_configuration() -> None:
    for command in (
        ["promtool", "check", "rules", str(RULES_FILE)],
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


# What some alerts do with data: (alert, input series (promtool's expanding notation, one
# sample a minute), minute of evaluation, the label sets the alert's expression returns).
WEBHOOK = 'route="/v1/webhooks/{tenant}/vapi"'
INITIATION = 'route="/v1/webhooks/{tenant}/elevenlabs/initiation"'
LAG = 'memstream_projection_lag_events{projection="memories",version="1",topic="t",partition="0"}'
BATCHES = 'memstream_projection_batch_seconds_count{projection="memories",version="1"}'
MEMORIES_V1 = {"projection": "memories", "version": "1"}


def slow_buckets(route: str) -> dict[str, str]:
    """A request-latency histogram with 90% of requests between 50 and 100 ms."""
    bucket = "memstream_ingest_request_seconds_bucket"
    return {
        f'{bucket}{{{route},le="0.025"}}': "0+10x40",
        f'{bucket}{{{route},le="0.05"}}': "0+10x40",
        f'{bucket}{{{route},le="0.1"}}': "0+100x40",
        f'{bucket}{{{route},le="+Inf"}}': "0+100x40",
    }


BEHAVIOUR: list[tuple[str, str, dict[str, str], int, list[dict[str, str]]]] = [
    ("stalled: lag, batch count flat", "MemstreamProcessorStalled",
     {LAG: "500x40", BATCHES: "7x40"}, 20, [MEMORIES_V1]),
    ("stalled: lag, never a batch", "MemstreamProcessorStalled", {LAG: "500x40"}, 20,
     [MEMORIES_V1]),
    ("not stalled: batches committed", "MemstreamProcessorStalled",
     {LAG: "500x40", BATCHES: "0+5x40"}, 20, []),
    ("not stalled: no lag", "MemstreamProcessorStalled", {LAG: "0x40", BATCHES: "7x40"}, 20, []),
    ("lag high and stuck", "MemstreamProjectionLagHigh", {LAG: "200000x40"}, 30, [MEMORIES_V1]),
    ("a rebuild catching up is not an alert", "MemstreamProjectionLagHigh",
     {LAG: "1000000-1000x40"}, 30, []),
    ("lag growing", "MemstreamProjectionLagGrowing", {LAG: "0+120x40"}, 30, [MEMORIES_V1]),
    ("lag high but shrinking is not growing", "MemstreamProjectionLagGrowing",
     {LAG: "90000-120x40"}, 30, []),
    ("a dead letter", "MemstreamDLQGrowing",
     {'memstream_dlq_events_total{projection="memories",version="1",reason="apply"}':
      "0 0 0 1x20"}, 10, [{**MEMORIES_V1, "reason": "apply"}]),
    ("appends failing", "MemstreamAppendFailures",
     {'memstream_append_failures_total{topic="memstream.conversations"}': "0+1x20"}, 10,
     [{"topic": "memstream.conversations"}]),
    ("no new append failure", "MemstreamAppendFailures",
     {'memstream_append_failures_total{topic="memstream.conversations"}': "5x20"}, 10, []),
    ("2% of webhooks answer 5xx", "MemstreamIngestServerErrors",
     {f'memstream_ingest_requests_total{{{WEBHOOK},status="503"}}': "0+2x20",
      f'memstream_ingest_requests_total{{{WEBHOOK},status="200"}}': "0+98x20"}, 10,
     [{"route": "/v1/webhooks/{tenant}/vapi"}]),
    ("429s are not rejections", "MemstreamQueryRejections",
     {'memstream_query_rejected_total{route="/v1/tools/vapi",code="rate_limited"}': "0+50x40",
      'memstream_query_requests_total{route="/v1/tools/vapi",status="429"}': "0+50x40",
      'memstream_query_requests_total{route="/v1/tools/vapi",status="200"}': "0+50x40"}, 30, []),
    ("slow webhook acknowledgements", "MemstreamWebhookAckSlow", slow_buckets(WEBHOOK), 20,
     [{"route": "/v1/webhooks/{tenant}/vapi"}]),
    ("the initiation webhook is a briefing, not an acknowledgement", "MemstreamWebhookAckSlow",
     slow_buckets(INITIATION), 20, []),
    ("slow initiation briefings", "MemstreamInitiationBriefingSlow", slow_buckets(INITIATION),
     20, [{"route": "/v1/webhooks/{tenant}/elevenlabs/initiation"}]),
    ("circuit open", "MemstreamProviderCircuitOpen",
     {'memstream_provider_breaker_state{provider="openai",operation="chat"}': "2x20"}, 10,
     [{"provider": "openai", "operation": "chat"}]),
    ("circuit half-open", "MemstreamProviderCircuitOpen",
     {'memstream_provider_breaker_state{provider="openai",operation="chat"}': "1x20"}, 10, []),
]  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_alert_expressions_fire_on_the_data_they_are_about(
    document: dict[str, Any], tmp_path: Path
) -> None:
    """promtool evaluates each alert's expression from the rules file over made-up series.

    ``count by (the expected labels)`` of the expression, so that the test states which
    series fire, not the values they fire with.
    """
    exprs = {rule["alert"]: rule["expr"] for rule in rules(document) if "alert" in rule}
    tests = []
    for case, alert, series, minute, firing in BEHAVIOUR:
        keys = sorted({key for labels in firing for key in labels}) or ["__name__"]
        tests.append(
            {
                "name": case,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "promql_expr_test": [
                    {
                        "expr": f"count by ({', '.join(keys)}) ({exprs[alert]})",
                        "eval_time": f"{minute}m",
                        "exp_samples": [
                            {
                                "labels": "{" + ",".join(f'{k}="{labels[k]}"' for k in keys) + "}",
                                "value": 1,
                            }
                            for labels in firing
                        ],
                    }
                ],
            }
        )
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(RULES_FILE)], "tests": tests}), encoding="utf-8"
    )
    result = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the dashboards --------------------------------------------------------------------


def test_the_three_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} >= {"ingest", "projections", "query"}


def test_dashboards_query_the_provisioned_prometheus(dashboard: dict[str, Any]) -> None:
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    [prometheus] = [d for d in datasources if d["type"] == "prometheus"]
    panels = [p for p in dashboard_panels(dashboard["panels"]) if p["type"] != "row"]
    assert panels, dashboard["title"]
    ids = [p["id"] for p in dashboard_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), f"{dashboard['title']}: panel ids repeat"
    for panel in panels:
        assert panel["targets"], f"{dashboard['title']} / {panel['title']} has no query"
        sources = [panel["datasource"]] + [t.get("datasource", panel["datasource"])
                                           for t in panel["targets"]]  # fmt: skip
        for source in sources:
            assert source == {"type": "prometheus", "uid": prometheus["uid"]}, panel["title"]


def test_dashboards_have_distinct_uids() -> None:
    uids = [json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids


def test_every_dashboard_query_parses_and_uses_exported_metrics(
    dashboard: dict[str, Any], known: set[str]
) -> None:
    exprs = list(dashboard_exprs(dashboard))
    assert exprs
    for expr in exprs:
        try:
            promql_parser.parse(expr)
        except ValueError as exc:
            pytest.fail(f"{dashboard['title']}: {expr!r}: {exc}")
    unknown = unknown_metrics(exprs, known)
    assert not unknown, f"{dashboard['title']} queries metrics nobody exports: {unknown}"
