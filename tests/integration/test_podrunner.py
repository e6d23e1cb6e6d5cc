"""The local pod runner on the real test control plane: pods run as processes, Jobs complete from their status.

Every pod runs a small `python3 -c` script (mapped to this interpreter by the runner) and reports what it
saw through its termination message, so the assertions check what the process really got.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cxbackup.localcluster.controlplane import ControlPlane
from cxbackup.localcluster.podrunner import DEFAULT_NODE_NAME, PathRewriter, PodRunner, expand_references

pytestmark = pytest.mark.integration

TERMINAL = ("Succeeded", "Failed")


# ---- fixtures and helpers -----------------------------------------------------------------------------


@pytest.fixture
def core(control_plane: ControlPlane) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def batch(control_plane: ControlPlane) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield client.BatchV1Api(api)
    finally:
        api.close()


@pytest.fixture
def ns(namespace: str, core: Any) -> str:
    """The test namespace once its default ServiceAccount exists (pod admission needs it)."""
    _wait_for(lambda: _exists(lambda: core.read_namespaced_service_account("default", namespace)), 30, "default SA")
    return namespace


@pytest.fixture
def runner(control_plane: ControlPlane, ns: str, tmp_path: Path) -> Iterator[PodRunner]:
    with PodRunner(control_plane.kubeconfig, tmp_path / "runner", namespaces=[ns], max_parallel=4) as r:
        yield r


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _pod(name: str, script: str, *, args: list[str] | None = None, **container: Any) -> dict[str, Any]:
    spec_keys = {"volumes", "serviceAccountName"}
    spec = {k: container.pop(k) for k in list(container) if k in spec_keys}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"team": "recordings"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.12-slim",
                    "command": ["python3", "-c", script],
                    "args": args or [],
                    **container,
                }
            ],
            **spec,
        },
    }


def _finished(core: Any, ns: str, name: str, timeout: float = 30) -> Any:
    def check() -> Any:
        pod = core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase in TERMINAL else None

    return _wait_for(check, timeout, f"pod {name} to finish")


def _running(core: Any, ns: str, name: str, timeout: float = 30) -> Any:
    def check() -> Any:
        pod = core.read_namespaced_pod(name, ns)
        assert pod.status.phase not in TERMINAL, pod.status
        return pod if pod.status.phase == "Running" else None

    return _wait_for(check, timeout, f"pod {name} to run")


def _terminated(pod: Any) -> Any:
    return pod.status.container_statuses[0].state.terminated


def _indexed_job(name: str, script: str, claim: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "completions": 3,
            "parallelism": 3,
            "completionMode": "Indexed",
            **extra,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "worker",
                            "image": "python:3.12-slim",
                            "command": ["python3", "-c", script],
                            "volumeMounts": [{"name": "target", "mountPath": "/data", "subPath": "run1"}],
                        }
                    ],
                    "volumes": [{"name": "target", "persistentVolumeClaim": {"claimName": claim}}],
                }
            },
        },
    }


def _pvc(core: Any, ns: str, name: str) -> None:
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
        },
    )


def _job_complete(batch: Any, ns: str, name: str, timeout: float) -> Any:
    def check() -> Any:
        job = batch.read_namespaced_job(name, ns)
        conditions = {c.type: c.status for c in job.status.conditions or []}
        assert conditions.get("Failed") != "True", job.status
        return job if conditions.get("Complete") == "True" else None

    return _wait_for(check, timeout, f"job {name} to complete")


WRITE_MESSAGE = "import pathlib; pathlib.Path('/dev/termination-log').write_text({})"


# ---- pure parts -------------------------------------------------------------------------------------


def test_expansion_follows_the_kubelet() -> None:
    env = {"A": "x", "EMPTY": ""}
    assert expand_references("$(A)/$(A)", env) == "x/x"
    assert expand_references("$$(A) $$ $(B) $(EMPTY)|", env) == "$(A) $ $(B) |"
    assert expand_references("$(A $ $x trailing$", env) == "$(A $ $x trailing$"


def test_path_rewriting_matches_whole_path_prefixes() -> None:
    rewrite = PathRewriter({"/data": "/L/d", "/data/sub": "/L/s", "/etc/app/": "/L/e"})
    assert rewrite("/data /data/x /data/sub/y dir=/data,/etc/app/f") == "/L/d /L/d/x /L/s/y dir=/L/d,/L/e/f"
    assert rewrite("/database /mnt/data /data.bak") == "/database /mnt/data /data.bak"


# ---- pods ---------------------------------------------------------------------------------------------


def test_bare_pod_succeeds_with_its_termination_message(core: Any, ns: str, runner: PodRunner) -> None:
    script = "print('hello from the pod'); " + WRITE_MESSAGE.format("'all done'")
    core.create_namespaced_pod(ns, _pod("hello", script))
    pod = _finished(core, ns, "hello")
    assert pod.status.phase == "Succeeded", pod.status
    done = _terminated(pod)
    assert (done.exit_code, done.reason, done.message) == (0, "Completed", "all done")
    assert done.started_at is not None and done.finished_at >= done.started_at
    assert pod.spec.node_name == DEFAULT_NODE_NAME
    assert pod.status.pod_ip == "127.0.0.1" and pod.status.start_time is not None
    assert "hello from the pod" in runner.logs(ns, "hello")


def test_failing_pod_reports_exit_code_and_log_tail(core: Any, ns: str, runner: PodRunner) -> None:
    script = "import sys; print('boom: the config is invalid'); sys.exit(3)"
    core.create_namespaced_pod(ns, _pod("fails", script, terminationMessagePolicy="FallbackToLogsOnError"))
    pod = _finished(core, ns, "fails")
    assert pod.status.phase == "Failed"
    done = _terminated(pod)
    assert (done.exit_code, done.reason) == (3, "Error")
    assert "boom: the config is invalid" in done.message


def test_env_from_secrets_configmaps_and_fields(
    core: Any, ns: str, runner: PodRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cxbackup.localcluster.podrunner")
    core.create_namespaced_secret(ns, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret-value"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"mode": "fast", "X": "1"}})
    names = ["PASSWORD", "MODE", "POD_NAME", "TEAM", "OPTIONAL", "CM_X", "HOME"]
    script = "import json, os; " + WRITE_MESSAGE.format(f"json.dumps({{k: os.environ.get(k) for k in {names}}})")
    env = [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
    ]
    pod_doc = _pod("env", script, env=env, envFrom=[{"prefix": "CM_", "configMapRef": {"name": "settings"}}])
    core.create_namespaced_pod(ns, pod_doc)
    pod = _finished(core, ns, "env")
    assert pod.status.phase == "Succeeded", pod.status
    seen = json.loads(_terminated(pod).message)
    assert seen == {
        "PASSWORD": "s3cret-value",
        "MODE": "fast",
        "POD_NAME": "env",
        "TEAM": "recordings",
        "OPTIONAL": None,
        "CM_X": "1",
        "HOME": str(runner.pod_dir(ns, "env")),
    }
    assert "s3cret-value" not in caplog.text
    assert "pod " + ns + "/env" in caplog.text


def test_pods_that_cannot_run_fail_saying_why(core: Any, ns: str, runner: PodRunner) -> None:
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "password"}}}]
    core.create_namespaced_pod(ns, _pod("nosecret", "pass", env=env))
    volumes = [{"name": "t", "persistentVolumeClaim": {"claimName": "noclaim"}}]
    mounts = [{"name": "t", "mountPath": "/data"}]
    core.create_namespaced_pod(ns, _pod("noclaim", "pass", volumes=volumes, volumeMounts=mounts))
    two = _pod("two", "pass")
    two["spec"]["containers"].append({**two["spec"]["containers"][0], "name": "second"})
    core.create_namespaced_pod(ns, two)
    for name, wanted in (
        ("nosecret", 'secret "absent" not found'),
        ("noclaim", 'persistentvolumeclaim "noclaim" not found'),
        ("two", "exactly one (main) container; pod has 2"),
    ):
        pod = _finished(core, ns, name)
        assert pod.status.phase == "Failed"
        assert wanted in pod.status.message
        assert wanted in _terminated(pod).message
    assert not (runner.pod_dir(ns, "nosecret") / "main.log").exists()  # never started


def test_init_containers_run_first_and_cxbackup_runs_from_the_checkout(core: Any, ns: str, runner: PodRunner) -> None:
    pod_doc = _pod("staged", "print(open('/shared/greeting').read())")
    init = {
        "name": "prepare",
        "image": "busybox",
        "command": ["python3", "-c", "open('/shared/greeting', 'w').write('prepared by init')"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    pod_doc["spec"]["initContainers"] = [init]
    pod_doc["spec"]["volumes"] = [{"name": "shared", "emptyDir": {}}]
    pod_doc["spec"]["containers"][0]["volumeMounts"] = init["volumeMounts"]
    core.create_namespaced_pod(ns, pod_doc)
    # The cxbackup image without a command runs its entrypoint, `cxbackup`, as does an explicit command.
    cli = _pod("cli", "")
    cli["spec"]["containers"][0].update(image="ghcr.io/cxbackup/cxbackup:0.1.0", command=[], args=["--help"])
    core.create_namespaced_pod(ns, cli)
    explicit = _pod("explicit", "")
    explicit["spec"]["containers"][0].update(command=["cxbackup"], args=["--help"])
    core.create_namespaced_pod(ns, explicit)

    pod = _finished(core, ns, "staged")
    assert pod.status.phase == "Succeeded", runner.logs(ns, "staged")
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
    assert runner.logs(ns, "staged", "main") == "prepared by init\n"
    for name in ("cli", "explicit"):
        pod = _finished(core, ns, name)
        assert pod.status.phase == "Succeeded", runner.logs(ns, name)
        assert runner.logs(ns, name).startswith("usage: cxbackup")


def test_configmap_volume_with_mount_paths_rewritten(core: Any, ns: str, runner: PodRunner) -> None:
    properties = "targetDir=/backup/recordings\nconfig=/etc/app/conf\nuntouched=/etcetera\n"
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "app"}, "data": {"app.properties": properties, "other": "x"}}
    )
    script = (
        "import os, pathlib; conf = pathlib.Path('/etc/app/conf/app.properties'); "
        "assert not os.path.exists('/etc/app/other'); pathlib.Path('/backup/out').write_text('ok'); "
        + WRITE_MESSAGE.format("conf.read_text()")
    )
    items = [{"key": "app.properties", "path": "conf/app.properties"}]
    volumes = [{"name": "config", "configMap": {"name": "app", "items": items}}, {"name": "scratch", "emptyDir": {}}]
    mounts = [{"name": "config", "mountPath": "/etc/app", "readOnly": True}]
    mounts.append({"name": "scratch", "mountPath": "/backup"})
    core.create_namespaced_pod(ns, _pod("files", script, volumes=volumes, volumeMounts=mounts))
    pod = _finished(core, ns, "files")
    assert pod.status.phase == "Succeeded", runner.logs(ns, "files")
    local = runner.pod_dir(ns, "files") / "volumes"
    assert _terminated(pod).message == (
        f"targetDir={local / 'scratch'}/recordings\nconfig={local / 'config'}/conf\nuntouched=/etcetera\n"
    )
    assert (local / "scratch" / "out").read_text() == "ok"


def test_command_and_args_expand_env_references(core: Any, ns: str, runner: PodRunner) -> None:
    script = "import json, sys; " + WRITE_MESSAGE.format("json.dumps(sys.argv[1:])")
    env = [{"name": "GREETING", "value": "hello"}, {"name": "NAME", "value": "$(GREETING)-world"}]
    args = ["$(GREETING)", "$$(GREETING)", "$(UNDEFINED)", "$(NAME)"]
    core.create_namespaced_pod(ns, _pod("expand", script, args=args, env=env))
    pod = _finished(core, ns, "expand")
    assert json.loads(_terminated(pod).message) == ["hello", "$(GREETING)", "$(UNDEFINED)", "hello-world"]


def test_kill_ends_the_pod_with_137(core: Any, ns: str, runner: PodRunner) -> None:
    core.create_namespaced_pod(ns, _pod("victim", "import time; time.sleep(60)"))
    pod = _running(core, ns, "victim")
    status = pod.status.container_statuses[0]
    assert status.state.running is not None and status.ready
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    runner.kill(ns, "victim")
    pod = _finished(core, ns, "victim", timeout=10)
    assert pod.status.phase == "Failed"
    assert (_terminated(pod).exit_code, _terminated(pod).reason) == (137, "Error")


def test_deleting_a_running_pod_stops_its_process(core: Any, ns: str, runner: PodRunner) -> None:
    script = "import os, pathlib, time; pathlib.Path('/work/pid').write_text(str(os.getpid())); time.sleep(60)"
    pod_doc = _pod(
        "doomed",
        script,
        volumes=[{"name": "w", "emptyDir": {}}],
        volumeMounts=[{"name": "w", "mountPath": "/work"}],
    )
    core.create_namespaced_pod(ns, pod_doc)
    _running(core, ns, "doomed")
    pid_file = runner.pod_dir(ns, "doomed") / "volumes" / "w" / "pid"
    pid = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text(), 10, "the pid file"))
    core.delete_namespaced_pod("doomed", ns)
    _wait_for(lambda: not _exists(lambda: core.read_namespaced_pod("doomed", ns)), 15, "the pod to be deleted")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_service_account_token_is_subject_to_rbac(
    core: Any, ns: str, runner: PodRunner, control_plane: ControlPlane
) -> None:
    for sa in ("reader", "nobody"):
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    control_plane.kubectl("create", "role", "pod-reader", "-n", ns, "--verb=get", "--resource=pods")
    control_plane.kubectl(
        "create", "rolebinding", "pod-reader", "-n", ns, "--role=pod-reader", f"--serviceaccount={ns}:reader"
    )
    script = (
        "import json, os\nfrom kubernetes import client, config\nconfig.load_kube_config()\n"
        "try:\n    msg = 'uid=' + client.CoreV1Api().read_namespaced_pod("
        "os.environ['POD_NAME'], os.environ['POD_NAMESPACE']).metadata.uid\n"
        "except client.ApiException as exc:\n    msg = f'status={exc.status} ' + json.loads(exc.body)['message']\n"
        "open('/dev/termination-log', 'w').write(msg)\n"
    )
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    for sa in ("reader", "nobody"):
        core.create_namespaced_pod(ns, _pod(f"as-{sa}", script, env=env, serviceAccountName=sa))
    allowed = _finished(core, ns, "as-reader")
    assert _terminated(allowed).message == f"uid={allowed.metadata.uid}", runner.logs(ns, "as-reader")
    denied = _finished(core, ns, "as-nobody")
    message = _terminated(denied).message
    assert message.startswith("status=403 "), runner.logs(ns, "as-nobody")
    assert f"system:serviceaccount:{ns}:nobody" in message


# ---- Jobs ---------------------------------------------------------------------------------------------


def test_indexed_job_completes_with_one_file_per_index(core: Any, batch: Any, ns: str, runner: PodRunner) -> None:
    _pvc(core, ns, "target")
    script = "import os, pathlib; i = os.environ['JOB_COMPLETION_INDEX']; pathlib.Path('/data', i).write_text(i)"
    batch.create_namespaced_job(ns, _indexed_job("shards", script, "target"))
    job = _job_complete(batch, ns, "shards", timeout=40)
    assert job.status.succeeded == 3
    out = runner.pvc_dir(ns, "target") / "run1"
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "2"]


def test_indexed_job_retries_a_failed_index(core: Any, batch: Any, ns: str, runner: PodRunner) -> None:
    _pvc(core, ns, "target")
    script = (
        "import os, pathlib, sys\ni = os.environ['JOB_COMPLETION_INDEX']\nmarker = pathlib.Path('/data/failed-' + i)\n"
        "if i == '1' and not marker.exists():\n    marker.write_text('x')\n    sys.exit(7)\n"
        "pathlib.Path('/data', 'done-' + i).write_text(i)\n"
    )
    batch.create_namespaced_job(ns, _indexed_job("flaky", script, "target", backoffLimitPerIndex=2))
    job = _job_complete(batch, ns, "flaky", timeout=50)
    assert (job.status.succeeded, job.status.failed) == (3, 1)
    out = runner.pvc_dir(ns, "target") / "run1"
    assert sorted(p.name for p in out.iterdir()) == ["done-0", "done-1", "done-2", "failed-1"]


# ---- the command line -----------------------------------------------------------------------------------


def test_cli_runs_pods_until_sigterm(core: Any, ns: str, control_plane: ControlPlane, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cxbackup.localcluster.podrunner", "--kubeconfig", str(control_plane.kubeconfig)]
    cmd += ["--workdir", str(tmp_path / "cli"), "--namespace", ns]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        core.create_namespaced_pod(ns, _pod("via-cli", WRITE_MESSAGE.format("'cli'")))
        pod = _finished(core, ns, "via-cli")
        assert (pod.status.phase, _terminated(pod).message) == ("Succeeded", "cli")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "pod runner stopped" in out
