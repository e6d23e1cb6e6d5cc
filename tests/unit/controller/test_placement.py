"""Where a run's worker pods go (controller/placement.py): every access-mode combination x replicas x target, and
the rules a placement must never break: ReadWriteOnce pods always together on the volume's node, ReadWriteMany and
S3 pods never tied to one node, ReadWriteOncePod never more than one shard."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cxbackup.api.status import Reason
from cxbackup.controller.placement import (
    CLAIM_LABEL,
    HOSTNAME_KEY,
    READ_ONLY_MANY,
    READ_WRITE_MANY,
    READ_WRITE_ONCE,
    READ_WRITE_ONCE_POD,
    S3_TARGET,
    Placement,
    TargetVolume,
    claim_label_value,
    place,
)
from cxbackup.controller.references import Blocked

LABELS = {"app.kubernetes.io/name": "cxbackup", "cxbackup.io/recordingbackup": "rb", "cxbackup.io/run": "r1"}
MODES = (READ_WRITE_ONCE, READ_ONLY_MANY, READ_WRITE_MANY, READ_WRITE_ONCE_POD)
COMBINATIONS = [c for n in range(len(MODES) + 1) for c in itertools.combinations(MODES, n)]
"""Every set of access modes a claim could list (the API server allows ReadWriteOncePod only alone; the rules do
not rely on that), the empty one standing for modes not known."""


def _pvc(modes: tuple[str, ...] | None, *, read_only: bool = False, claim: str = "recordings") -> TargetVolume:
    return TargetVolume("pvc", claim, "ns", modes, read_only)


def expected(modes: tuple[str, ...], replicas: int, read_only: bool) -> str:
    """The rule table of docs/reference/recordingbackup.md#placement, written out independently."""
    if READ_WRITE_ONCE_POD in modes:
        return "blocked" if replicas > 1 else "one-pod"
    if READ_WRITE_MANY in modes or (READ_ONLY_MANY in modes and read_only):
        return "spread" if replicas > 1 else "none"
    return "together"


def _spread_constraint(placement: Placement) -> dict[str, Any]:
    [constraint] = placement.pod_spec_fields()["topologySpreadConstraints"]
    assert isinstance(constraint, dict)
    return constraint


def _affinity_term(placement: Placement) -> dict[str, Any]:
    affinity = placement.pod_spec_fields()["affinity"]
    assert set(affinity) == {"podAffinity"}
    assert set(affinity["podAffinity"]) == {"requiredDuringSchedulingIgnoredDuringExecution"}
    [term] = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert isinstance(term, dict)
    return term


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("replicas", [1, 2, 3, 64])
@pytest.mark.parametrize("modes", COMBINATIONS, ids=lambda m: "+".join(m) or "unknown")
def test_pvc_placement_by_access_modes(modes: tuple[str, ...], replicas: int, read_only: bool) -> None:
    got = place(_pvc(modes, read_only=read_only), replicas, LABELS)
    rule = expected(modes, replicas, read_only)
    if rule == "blocked":
        assert isinstance(got, Blocked)
        assert got.reason == Reason.ACCESS_MODE_CONFLICT and got.invalid
        assert got.message.startswith(f"spec.replicas: {replicas} pods cannot all mount PersistentVolumeClaim ns/")
        assert "ReadWriteOncePod" in got.message and "set spec.replicas: 1" in got.message
        assert "ReadWriteMany" in got.message
        return
    assert isinstance(got, Placement), got
    assert got.rule == rule and got.reason
    fields = got.pod_spec_fields()
    if rule == "together":
        # every pod mounting the claim goes where the volume is attached: on the claim's label, on one node
        assert set(fields) == {"affinity"}
        assert got.labels == {CLAIM_LABEL: "recordings"}
        assert _affinity_term(got) == {
            "labelSelector": {"matchLabels": {CLAIM_LABEL: "recordings"}},
            "topologyKey": HOSTNAME_KEY,
        }
    elif rule == "spread":
        assert set(fields) == {"topologySpreadConstraints"} and got.labels == {}
        assert _spread_constraint(got) == {
            "maxSkew": 1,
            "topologyKey": HOSTNAME_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": LABELS},
        }
    else:  # one pod: nothing to spread, nothing to follow
        assert fields == {} and got.labels == {}


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("replicas", [1, 2, 3, 64])
@pytest.mark.parametrize("modes", COMBINATIONS, ids=lambda m: "+".join(m) or "unknown")
def test_an_s3_target_spreads_whatever_modes_come_with_it(
    modes: tuple[str, ...], replicas: int, read_only: bool
) -> None:
    got = place(TargetVolume("s3", access_modes=modes, read_only=read_only), replicas, LABELS)
    assert isinstance(got, Placement)
    assert "affinity" not in got.pod_spec_fields() and got.labels == {}
    if replicas > 1:
        assert got.rule == "spread" and _spread_constraint(got)["labelSelector"] == {"matchLabels": LABELS}
    else:
        assert got.rule == "none" and got.pod_spec_fields() == {}


def test_the_readwriteonce_rule_never_gives_way_to_a_spread_and_the_others_never_tie_pods_to_a_node() -> None:
    """Mutation-minded: the fields that matter, over the whole table at once."""
    for modes, replicas in itertools.product(COMBINATIONS, (1, 2, 3)):
        got = place(_pvc(modes), replicas, LABELS)
        if isinstance(got, Blocked):
            continue
        fields = got.pod_spec_fields()
        tied = "affinity" in fields
        multi = READ_WRITE_MANY in modes and READ_WRITE_ONCE_POD not in modes
        rwo = not multi and READ_WRITE_ONCE_POD not in modes
        assert tied == rwo, (modes, replicas, fields)
        assert ("topologySpreadConstraints" in fields) == (multi and replicas > 1), (modes, replicas, fields)
        assert (CLAIM_LABEL in got.labels) == rwo


def test_modes_not_known_are_taken_as_readwriteonce() -> None:
    for modes in (None, ()):
        got = place(_pvc(modes), 3, LABELS)
        assert isinstance(got, Placement) and got.rule == "together"
        assert "not known" in got.reason


def test_s3_target_constant() -> None:
    assert S3_TARGET.kind == "s3"
    got = place(S3_TARGET, 3, LABELS)
    assert isinstance(got, Placement) and got.rule == "spread" and "S3" in got.reason


def test_readwriteoncepod_names_the_field_it_is_given() -> None:
    got = place(_pvc((READ_WRITE_ONCE_POD,)), 2, LABELS, field="spec.shards")
    assert isinstance(got, Blocked) and got.message.startswith("spec.shards: 2 pods")
    assert "set spec.shards: 1" in got.message


def test_the_claim_label_fits_a_label_value() -> None:
    assert claim_label_value("recordings-backup") == "recordings-backup"
    assert claim_label_value("a" * 63) == "a" * 63
    long_one, other = "b" * 40 + "." + "c" * 100, "b" * 40 + "." + "c" * 101
    value = claim_label_value(long_one)
    assert len(value) <= 63 and value[0].isalnum() and value[-1].isalnum()
    assert value != claim_label_value(other)  # two long names that share their beginning stay apart
    assert value == claim_label_value(long_one)  # and every pod of one claim carries the same value
    got = place(_pvc((READ_WRITE_ONCE,), claim=long_one), 3, LABELS)
    assert isinstance(got, Placement)
    assert got.labels == {CLAIM_LABEL: value}
    assert _affinity_term(got)["labelSelector"] == {"matchLabels": {CLAIM_LABEL: value}}


def test_the_fields_are_copies() -> None:
    got = place(_pvc(None), 3, LABELS)
    assert isinstance(got, Placement)
    got.pod_spec_fields()["affinity"]["podAffinity"].clear()
    assert _affinity_term(got)["topologyKey"] == HOSTNAME_KEY
