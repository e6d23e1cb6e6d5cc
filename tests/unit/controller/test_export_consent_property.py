"""Property: any change to a consented ExportJob's spec ends the key owner's consent. Whatever is changed (the
subject, the range, the backup, the artifact's certificate, the store, the consenting certificate, ...), and
however (edited in place: the API server moves metadata.generation; or deleted and created again with the same
name: another metadata.uid), the operator starts no run that mounts the keyring. The CRD also refuses the edit
(CEL, tests/security/test_consent.py); this holds without it."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.controller.test_export_reconcile import (
    BEFORE,
    EXPORT_UID,
    MINUTE,
    T0,
    DecryptHarness,
    _decrypting,
)

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
TIMES = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2026, 8, 1)).map(
    lambda t: t.replace(microsecond=0, tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
)
UIDS = st.uuids().map(str)

Change = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Change:
    def change(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value

    return change


def _drop(path: str) -> Change:
    def change(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)

    return change


CHANGES = st.one_of(
    NAMES.map(lambda n: _set("subject.secret", n)),
    NAMES.map(lambda n: _set("subject.key", n)),
    NAMES.map(lambda n: _set("backup.recordingBackup", n)),
    NAMES.map(lambda n: _set("certificate.secret", n)),
    NAMES.map(lambda n: _set("decryptMedia.recordingCertificate", n)),
    NAMES.map(lambda n: _set("store.pvc", n)),
    NAMES.map(lambda n: _set("store.subPath", n)),
    TIMES.map(lambda t: _set("range.from", t)),
    st.sampled_from(["AES-128", "AES-256"]).map(lambda e: _set("encryption", e)),
    st.integers(1, 3650).map(lambda d: _set("retentionDays", d)),
    st.sampled_from(["0 * * * *", "*/5 * * * *"]).map(lambda c: _set("schedule", c)),
    st.just(_drop("decryptMedia")),
)


def _consented_and_run() -> DecryptHarness:
    h = _decrypting()
    h.tick(T0)
    [first] = h.cluster.job_names()
    h.cluster.finish_job(first, succeeded=True, at=T0 + MINUTE)
    h.tick(T0 + 2 * MINUTE)  # accounted
    return h


def _mounts_keyring(job: dict[str, Any]) -> bool:
    return any(v["name"] == "keyring" for v in job["spec"]["template"]["spec"]["volumes"])


def _new_runs_mount_no_keyring(h: DecryptHarness, before: list[str]) -> None:
    h.tick(T0 + 3 * MINUTE)
    h.annotations["cxbackup.io/run-now"] = "again"  # whatever triggers a run
    h.tick(T0 + 4 * MINUTE)
    new = [n for n in h.cluster.job_names() if n not in before]
    assert not any(_mounts_keyring(h.cluster.job(n)) for n in new), new


@settings(max_examples=60, deadline=None)
@given(st.lists(CHANGES, min_size=1, max_size=3), st.booleans(), UIDS)
def test_any_change_to_a_consented_export_jobs_spec_ends_the_consent(
    changes: list[Change], recreated: bool, new_uid: str
) -> None:
    h = _consented_and_run()
    before = h.cluster.job_names()
    spec = copy.deepcopy(h.spec)
    for change in changes:
        change(spec)
    if spec == h.spec:
        return  # nothing changed: the API server keeps the generation, and the consent stands
    # whatever the change names exists and is as the consent rules want it, so only the change itself decides
    for name in (spec.get("subject", {}).get("secret"),):
        if name and ("ns", name) not in h.cluster.secrets:
            h.cluster.put_credentials(name, {spec["subject"].get("key", "subject"): b"agent:x\n"},
                                      immutable=True, created=BEFORE)  # fmt: skip
    h.spec = spec
    if recreated:  # deleted and created again under the same name: generation 1, another uid
        h.uid = new_uid if new_uid != EXPORT_UID else "11111111-2222-4333-8444-555555555555"
        h.status = {}
        for name in before:
            h.cluster.jobs.pop(("ns", name))  # its Jobs went with it
        before = []
    else:  # edited in place
        h.generation += 1
    _new_runs_mount_no_keyring(h, before)
