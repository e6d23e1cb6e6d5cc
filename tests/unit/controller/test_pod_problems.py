"""Why a Job's pods failed or cannot start, as the backup controller reports it in status and Events."""

from __future__ import annotations

from typing import Any

from cxbackup.controller.jobstate import pod_problems


def _pod(name: str, created: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def _terminated(reason: str, code: int) -> dict[str, Any]:
    return {"name": "worker", "state": {"terminated": {"reason": reason, "exitCode": code}}}


def test_an_oom_killed_worker_is_named_with_the_field_to_change() -> None:
    pods = [_pod("rb-0-a", "2026-01-01T00:00:00Z", phase="Failed", containerStatuses=[_terminated("OOMKilled", 137)])]
    [problem] = pod_problems(pods)
    assert not problem.waiting
    assert str(problem) == (
        "pod rb-0-a: OOMKilled (exit code 137): the worker hit its memory limit: raise spec.pod.resources.limits.memory"
    )


def test_a_missing_image_is_a_waiting_problem_and_successes_are_not_problems() -> None:
    waiting = {
        "name": "worker",
        "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "image x not present"}},
    }
    ok = _pod("rb-1-b", "2026-01-01T00:00:01Z", phase="Succeeded", containerStatuses=[_terminated("Completed", 0)])
    pods = [_pod("rb-0-a", "2026-01-01T00:00:00Z", phase="Pending", containerStatuses=[waiting]), ok]
    [problem] = pod_problems(pods)
    assert problem.waiting and problem.reason == "ErrImageNeverPull"
    assert "image x not present" in str(problem) and "pull policy is Never" in str(problem)


def test_distinct_causes_newest_first_and_bounded() -> None:
    pods = [
        _pod(f"rb-{i}", f"2026-01-01T00:00:0{i}Z", phase="Failed", containerStatuses=[_terminated("Error", i + 1)])
        for i in range(5)
    ]
    pods.append(_pod("rb-dup", "2026-01-01T00:00:00Z", phase="Failed", containerStatuses=[_terminated("Error", 5)]))
    found = pod_problems(pods)
    assert [p.pod for p in found] == ["rb-4", "rb-3", "rb-2"]
    assert all(p.reason == "Error" for p in found)


def test_a_pod_failed_by_the_node_without_container_status() -> None:
    pods = [_pod("rb-0", "2026-01-01T00:00:00Z", phase="Failed", reason="Evicted", message="low on memory")]
    assert [str(p) for p in pod_problems(pods)] == ["pod rb-0: Evicted (low on memory)"]


def test_a_pod_no_node_can_take_is_a_waiting_problem() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
    }
    pods = [_pod("rb-0", "2026-01-01T00:00:00Z", phase="Pending", conditions=[scheduled])]
    [problem] = pod_problems(pods)
    assert problem.waiting and problem.reason == "Unschedulable"
    assert "unbound immediate PersistentVolumeClaims" in str(problem) and "PVC is not bound" in str(problem)
    scheduled_ok = {"type": "PodScheduled", "status": "True"}
    assert pod_problems([_pod("rb-1", "2026-01-01T00:00:00Z", phase="Pending", conditions=[scheduled_ok])]) == []
