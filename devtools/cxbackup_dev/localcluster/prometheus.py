"""A real Prometheus server for tests: it scrapes the operator as the chart's ServiceMonitor makes a
Prometheus operator scrape it, and evaluates the chart's alert rules.

The binary is Prometheus 3.16.0, built from the Go module proxy by hack/build-prometheus.sh (cached under
~/.cache/cxbackup/tools/prometheus-<version>/). `Prometheus` writes prometheus.yml and the rules file into
its work directory, runs the server on 127.0.0.1 with its TSDB there, waits until it is ready, answers
queries through the HTTP API, and stops the server when it is stopped or the context exits.

What "as the chart's ServiceMonitor" means (`chart_scrape_settings` reads the rendered ServiceMonitor and
Service): for every endpoint of a ServiceMonitor the Prometheus operator writes a scrape job whose targets
carry the labels `job` (the Service's name, or its `jobLabel` label), `namespace` (the Service's
namespace), `service`, `endpoint` (the port's name), `pod` and `container`; `honor_labels` is the
endpoint's `honorLabels` (false when unset), so a scraped label that clashes with a target label is
renamed `exported_<name>`. The interval, timeout and path are the endpoint's. The harness writes the
same labels as static labels of one job (pod and container only when given: cxbackup's metrics have no
such labels, so they change nothing but the `up` series).

`chart_rule_groups` renders the chart's PrometheusRule; `dashboard_queries` lists every panel query of
dashboards/*.json with Grafana's variables replaced, so each can run as an instant query.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cxbackup_dev.localcluster.controlplane import REPO_ROOT, free_port, stop_process

__all__ = [
    "PROMETHEUS_VERSION",
    "HelmRun",
    "Prometheus",
    "PrometheusError",
    "ScrapeSettings",
    "build_prometheus",
    "chart_rule_groups",
    "chart_scrape_settings",
    "dashboard_queries",
    "sample_value",
]

PROMETHEUS_VERSION = os.environ.get("PROMETHEUS_VERSION", "v0.316.0")
# The chart's PrometheusRule sets no group interval, so the Prometheus that loads it decides how often
# rules run: the Prometheus operator's default (the Prometheus resource's spec.evaluationInterval) is 30s.
DEFAULT_EVALUATION_INTERVAL = "30s"

# Runs helm with these arguments and returns the finished process (stdout as text); raises on failure.
# The integration tests' Helm.run and LocalStack.helm_run are such functions.
HelmRun = Callable[..., subprocess.CompletedProcess[str]]


class PrometheusError(RuntimeError):
    """Prometheus could not be built, started or queried, or the chart did not render; the message says why."""


def build_prometheus() -> str:
    """hack/build-prometheus.sh (a no-op when cached): the path of the prometheus binary."""
    script = REPO_ROOT / "hack" / "build-prometheus.sh"
    env = {**os.environ, "PROMETHEUS_VERSION": PROMETHEUS_VERSION}
    proc = subprocess.run([str(script)], env=env, stdout=subprocess.PIPE, text=True, check=False, timeout=3600)
    if proc.returncode != 0:
        raise PrometheusError(f"{script} failed with exit code {proc.returncode}; see its output above")
    return proc.stdout.strip().splitlines()[-1]


# ---- the chart ----------------------------------------------------------------------------------
def _helm_template(
    helm: HelmRun,
    chart_dir: Path,
    values: Mapping[str, Any] | None,
    templates: Sequence[str],
    settings: Sequence[str],
    *,
    release: str,
    namespace: str,
) -> list[dict[str, Any]]:
    """The documents `helm template` renders from `templates`, with `values` (a values file) and `settings`."""
    with tempfile.TemporaryDirectory(prefix="cxbackup-values-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        # cluster-wide unless `values` say otherwise (the chart's default, per namespace, needs watchNamespaces)
        wide = {} if "rbac" in (values or {}) else {"rbac": {"clusterWide": True}}
        values_file.write_text(json.dumps(wide | dict(values or {})))
        args = ["template", release, str(chart_dir), "--namespace", namespace, "-f", str(values_file)]
        for setting in settings:
            args += ["--set", setting]
        for template in templates:
            args += ["--show-only", template]
        out = helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def chart_rule_groups(
    helm: HelmRun,
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "cxbackup",
    namespace: str = "cxbackup-system",
) -> list[dict[str, Any]]:
    """The rule groups (`spec.groups`) of the chart's PrometheusRule, rendered by `helm template` with
    `values` (the defaults when None) and metrics.prometheusRule.enabled=true: a Prometheus rules file's
    `groups`."""
    docs = _helm_template(
        helm,
        chart_dir,
        values,
        ["templates/prometheusrule.yaml"],
        ["metrics.prometheusRule.enabled=true"],
        release=release,
        namespace=namespace,
    )
    kinds = [doc.get("kind") for doc in docs]
    if kinds != ["PrometheusRule"]:
        raise PrometheusError(f"templates/prometheusrule.yaml rendered {kinds}, not one PrometheusRule")
    spec: dict[str, Any] = docs[0]["spec"]
    if set(spec) != {"groups"}:
        raise PrometheusError(f"the PrometheusRule's spec is not a rules file: {sorted(spec)}")
    groups: list[dict[str, Any]] = spec["groups"]
    return groups


@dataclass(frozen=True)
class ScrapeSettings:
    """One scrape job as the Prometheus operator writes it for a ServiceMonitor endpoint."""

    job: str
    interval: str
    timeout: str | None = None
    path: str = "/metrics"
    honor_labels: bool = False
    # Labels of every target besides `job` and `instance` (namespace, service, endpoint; pod, container).
    target_labels: Mapping[str, str] = field(default_factory=dict)


def chart_scrape_settings(
    helm: HelmRun,
    chart_dir: Path,
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "cxbackup",
    namespace: str = "cxbackup-system",
    pod: str | None = None,
    container: str | None = None,
) -> ScrapeSettings:
    """The scrape job of the chart's ServiceMonitor (its only endpoint) for the release `release` in
    `namespace`, rendered with `values` and metrics.serviceMonitor.enabled=true, and the Service it
    selects (which names the job)."""
    docs = _helm_template(
        helm,
        chart_dir,
        values,
        ["templates/servicemonitor.yaml", "templates/service.yaml"],
        ["metrics.serviceMonitor.enabled=true"],
        release=release,
        namespace=namespace,
    )
    monitors = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    services = [d for d in docs if d.get("kind") == "Service"]
    if len(monitors) != 1 or len(services) != 1:
        raise PrometheusError(f"expected one ServiceMonitor and one Service, rendered {[d.get('kind') for d in docs]}")
    spec, service = monitors[0]["spec"], services[0]
    svc_labels: dict[str, str] = service["metadata"].get("labels") or {}
    selector: dict[str, str] = spec["selector"].get("matchLabels") or {}
    if not selector.items() <= svc_labels.items():
        raise PrometheusError(f"the ServiceMonitor's selector {selector} does not select the Service {svc_labels}")
    endpoints = spec["endpoints"]
    if len(endpoints) != 1:
        raise PrometheusError(f"the ServiceMonitor has {len(endpoints)} endpoints; the harness scrapes one")
    endpoint = endpoints[0]
    svc_name: str = service["metadata"]["name"]
    job = svc_labels.get(spec["jobLabel"], svc_name) if spec.get("jobLabel") else svc_name
    labels = {
        "namespace": service["metadata"].get("namespace", namespace),
        "service": svc_name,
        "endpoint": str(endpoint["port"]),
    }
    labels.update({k: v for k, v in (("pod", pod), ("container", container)) if v})
    return ScrapeSettings(
        job=job,
        interval=str(endpoint.get("interval") or "30s"),  # Prometheus' global default when unset
        timeout=str(endpoint["scrapeTimeout"]) if endpoint.get("scrapeTimeout") else None,
        path=str(endpoint.get("path") or "/metrics"),
        honor_labels=bool(endpoint.get("honorLabels", False)),
        target_labels=labels,
    )


# ---- the dashboards ---------------------------------------------------------------------------
# Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def dashboard_queries(
    dashboards_dir: Path,
    *,
    variables: Mapping[str, str] | None = None,
    rate_interval: str = "5m",
) -> list[tuple[str, str, str]]:
    """(dashboard file stem, panel title, expr) of every panel target of dashboards_dir/*.json, with the
    variables replaced: a dashboard variable by `variables[name]` when given, else by its `allValue` (every
    series; `.*` when it has none); `$__rate_interval` and `$__interval` by `rate_interval`, `$__range` by
    1h. An unknown variable raises, so a new one cannot slip through unreplaced."""
    queries: list[tuple[str, str, str]] = []
    for path in sorted(Path(dashboards_dir).glob("*.json")):
        board = json.loads(path.read_text())
        values = {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": "1h"}
        for var in board.get("templating", {}).get("list", []):
            values[var["name"]] = var.get("allValue") or ".*"
        values.update(variables or {})
        for title, expr in _panel_targets(board.get("panels", [])):
            queries.append((path.stem, title, _substitute(expr, values, path.name)))
    return queries


def _panel_targets(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query target, rows' nested panels included."""
    for panel in panels:
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield str(panel.get("title", "")), str(target["expr"])
        yield from _panel_targets(panel.get("panels", []))


def _substitute(expr: str, values: Mapping[str, str], source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise PrometheusError(f"{source}: unknown Grafana variable {match.group(0)!r} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def sample_value(sample: Mapping[str, Any]) -> float:
    """The value of one sample of an instant query's result."""
    return float(sample["value"][1])


# ---- the server -------------------------------------------------------------------------------
def _seconds(duration: str) -> float:
    """A Prometheus duration (1h30m, 10s, 500ms) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise PrometheusError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


@dataclass
class Prometheus:
    """Prometheus on 127.0.0.1, rooted at `workdir`: scrapes `scrape_targets` (host:port) with `scrape` and
    evaluates `rule_groups`. `scrape_interval` and `evaluation_interval` default to the chart's (the
    ServiceMonitor's interval; 30s, see DEFAULT_EVALUATION_INTERVAL); tests pass shorter ones. A scrape
    timeout longer than the interval is cut to the interval (Prometheus rejects it otherwise)."""

    workdir: Path
    scrape_targets: Sequence[str]
    rule_groups: Sequence[Mapping[str, Any]]
    scrape: ScrapeSettings
    scrape_interval: str | None = None
    evaluation_interval: str = DEFAULT_EVALUATION_INTERVAL
    binary: str | None = None
    ready_timeout: float = 60.0
    discovery_reload_interval: str | None = None
    """`--scrape.discovery-reload-interval`: how soon the scrape targets apply after the start (Prometheus'
    default, 5s, when None; tests pass 100ms so that their first scrape does not wait for it)."""
    port: int = field(default=0, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (after `start`, before `stop`)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        return self.workdir / "prometheus.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def rules_file(self) -> Path:
        return self.workdir / "rules.yaml"

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    # ---- configuration -------------------------------------------------------------------------
    def effective_scrape(self) -> ScrapeSettings:
        """`scrape` with the interval of this run, and a timeout no longer than it."""
        interval = self.scrape_interval or self.scrape.interval
        timeout = self.scrape.timeout
        if timeout is not None and _seconds(timeout) > _seconds(interval):
            timeout = interval
        return dataclasses.replace(self.scrape, interval=interval, timeout=timeout)

    def config(self) -> dict[str, Any]:
        """prometheus.yml: one scrape job like the ServiceMonitor's, the rules file, no Alertmanager."""
        scrape = self.effective_scrape()
        job: dict[str, Any] = {
            "job_name": scrape.job,
            "honor_labels": scrape.honor_labels,
            "metrics_path": scrape.path,
            "scheme": "http",
            "scrape_interval": scrape.interval,
            **({"scrape_timeout": scrape.timeout} if scrape.timeout is not None else {}),
            "static_configs": [{"targets": list(self.scrape_targets), "labels": dict(scrape.target_labels)}],
        }
        return {
            "global": {"scrape_interval": scrape.interval, "evaluation_interval": self.evaluation_interval},
            "rule_files": [self.rules_file.name],
            "scrape_configs": [job],
        }

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rules_file.write_text(yaml.safe_dump({"groups": list(self.rule_groups)}, sort_keys=False))
        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    # ---- process -------------------------------------------------------------------------------
    def start(self) -> Prometheus:
        binary = self.binary or build_prometheus()
        self._write_files()
        try:
            for attempt in range(3):
                self.port = free_port()
                self._spawn(binary)
                try:
                    self._wait_ready()
                    return self
                except PrometheusError as exc:
                    # another process took the port between the pick and the bind: pick again
                    if "address already in use" not in str(exc) or attempt == 2:
                        raise
                    self.stop()
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _spawn(self, binary: str) -> None:
        args = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=info",
        ]
        if self.discovery_reload_interval:
            args.append(f"--scrape.discovery-reload-interval={self.discovery_reload_interval}")
        with self.log_file.open("wb") as out:  # a new log per attempt
            self._proc = subprocess.Popen(
                args,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _check_alive(self) -> None:
        if self._proc is None:
            raise PrometheusError("prometheus is not running (start it first)")
        code = self._proc.poll()
        if code is not None:
            raise PrometheusError(
                f"prometheus exited with code {code}; its log, {self.log_file}, ends:\n{self.log_tail()}"
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise PrometheusError(
            f"prometheus not ready after {self.ready_timeout:.0f}s ({last}); its log, {self.log_file}, ends:\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; waits for the process either way. Idempotent."""
        proc, self._proc = self._proc, None
        stop_process(proc)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- HTTP API ------------------------------------------------------------------------------
    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>: the `data` of a successful answer; raises PrometheusError with
        Prometheus' own error text otherwise."""
        self._check_alive()
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            exc.close()
            try:
                body = json.loads(text)
            except ValueError:
                raise PrometheusError(f"GET {path} {params}: HTTP {exc.code}: {text[:500]}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"GET {path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at the Unix time `at`): a list of {"metric": labels, "value": [t, "v"]}
        (a scalar or string result is one such entry with no labels)."""
        params = {"query": expr} if at is None else {"query": expr, "time": repr(at)}
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
        poll: float = 0.5,
    ) -> list[dict[str, Any]]:
        """Query `expr` until `predicate(result)` holds (by default: until the result is not empty); the
        result. TimeoutError names the last result and the targets' health."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                break
            time.sleep(poll)
        health = [(t["scrapeUrl"], t["health"], t.get("lastError", "")) for t in self.targets()]
        raise TimeoutError(f"{expr!r} not as expected after {timeout:.0f}s; last result {result}; targets {health}")

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts: labels, annotations, state, activeAt, value."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def wait_for_alert(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        states: Sequence[str] = ("pending", "firing"),
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """The first active alert `name` whose labels include `labels`, in one of `states`."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            seen = self.alerts()
            for alert in seen:
                if (
                    alert["labels"].get("alertname") == name
                    and alert["state"] in states
                    and dict(labels or {}).items() <= alert["labels"].items()
                ):
                    return alert
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        rule_health = [(r["name"], r["health"], r.get("lastError", "")) for g in self.rules() for r in g["rules"]]
        raise TimeoutError(
            f"no {'/'.join(states)} alert {name} with labels {labels} after {timeout:.0f}s; active alerts "
            f"{[(a['labels'], a['state']) for a in seen]}; rules {[r for r in rule_health if r[0] == name]}"
        )

    def rules(self) -> list[dict[str, Any]]:
        """The loaded rule groups with each rule's state, health and last error."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets: labels, scrapeUrl, health (up/down/unknown), lastError."""
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets
