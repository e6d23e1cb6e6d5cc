"""kopf handlers for RecordingCertificate: one timer per resource validates, keeps every key, rotates.

Each tick (settings.reconcile_interval):

1. Read the current pair: the uploaded Secret (spec.secretRef), or `<name>-tls` for spec.generate,
   generated on first sight (type kubernetes.io/tls, labelled cxbackup.io/certificate=<name>, no owner
   reference: keys outlive the resource).
2. Validate it and put it into the keyring Secret (spec.keyringSecret or `<name>-keyring`) when the key
   belongs to the certificate, expired or not: `<serial>.crt` + `<serial>.key`. Nothing is ever removed
   from the keyring and the operator never deletes it (also not when the resource is deleted).
3. Rotate generated certificates when certs.rotation says so: a new key and certificate with the same
   subject DN goes into the keyring FIRST (read back and checked), THEN into `<name>-tls`; the old one is
   listed in status.retired. On failure the old pair stays current. Uploaded certificates are not
   rotated (the vendor must provision every new certificate and the user owns the Secret): they get
   Expiring=True, reason RenewalRequired, and a Warning Event.
4. Status (Issued To / Issued By / Expires / Deployed Count, conditions, retired, nextRotationTime),
   written only when it changed; Events only when something changed; metrics state for the scrape-time
   collector.

Decisions are in `decisions` (pure); every API call goes through the injected `Cluster` (an in-memory
fake in tests), every Event through the injected `Emit`, and the clock is `now`. Keys and passwords never reach logs,
status or Events.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cxbackup import metrics
from cxbackup.api.certificate import RecordingCertificate
from cxbackup.api.common import BACKUPS, CERTIFICATES, EXPORTS
from cxbackup.api.status import CertificateReason, ConditionType
from cxbackup.certs.generate import ParameterInvalid, generate_pair, renew
from cxbackup.certs.validation import CertificateInfo, CertificateInvalid, inspect_certificate
from cxbackup.controller.certificate.decisions import (
    ANNOTATION_CERTIFICATE_UID,
    ANNOTATION_KEYRING,
    LABEL_CERTIFICATE,
    LABEL_KEYRING,
    TLS_CERT,
    TLS_KEY,
    Evaluation,
    GeneratePair,
    KeyPair,
    SourceProblem,
    certificate_conditions,
    condition_events,
    count_references,
    evaluate,
    keyring_additions,
    keyring_fingerprints,
    keyring_problem,
    keyring_secret_name,
    plan_rotation,
    plan_source,
    problem_conditions,
    retire,
    source_secret_name,
    status_changes,
    usage_events,
)
from cxbackup.controller.cluster import Cluster, ClusterError, SecretView
from cxbackup.controller.conditions import set_condition
from cxbackup.controller.events import Emit, EventSpec
from cxbackup.controller.registration import register_reconciler
from cxbackup.controller.settings import OperatorSettings
from cxbackup.core.times import iso_seconds, parse_time

__all__ = ["reconcile_certificate", "register"]

log = logging.getLogger(__name__)


class _RotationFailed(Exception):
    """Rotation did not complete; the old pair is still the current one and nothing was removed."""


def _ident(cert: RecordingCertificate) -> tuple[str, str]:
    return str(cert.metadata.get("namespace", "")), str(cert.metadata.get("name", ""))


def _status_fields(info: CertificateInfo) -> dict[str, Any]:
    fields = info.to_dict()
    fields.pop("keyDetails", None)  # not part of the status schema (it would be pruned)
    return fields


def _add_to_keyring(
    cluster: Cluster, cert: RecordingCertificate, ring: SecretView | None, additions: dict[str, bytes]
) -> dict[str, bytes]:
    """Add data keys to the keyring Secret (creating it), read it back and check; returns its data."""
    ns, name = _ident(cert)
    ring_name = keyring_secret_name(cert)
    labels = {LABEL_CERTIFICATE: name, LABEL_KEYRING: "true"}
    annotations = {ANNOTATION_KEYRING: "true"}
    uid = str(cert.metadata.get("uid") or "")
    if uid:  # the keyring names the certificate it belongs to (cxbackup.controller.certificate.decisions)
        annotations[ANNOTATION_CERTIFICATE_UID] = uid
    if ring is None and cluster.create_secret(ns, ring_name, additions, labels=labels, annotations=annotations):
        log.info("created keyring Secret %s/%s with %s", ns, ring_name, ", ".join(sorted(additions)))
    else:
        ring = ring or cluster.read_secret(ns, ring_name)
        if ring is None:
            raise ClusterError(f"keyring Secret {ns}/{ring_name} vanished while it was being written")
        problem = keyring_problem(cert, ring.labels, ring.annotations)  # e.g. created concurrently by another
        if problem is not None or ANNOTATION_CERTIFICATE_UID not in ring.annotations:
            # never write into a keyring that is not known to be this certificate's (adopted first, see
            # _adopt_keyring); one that appeared since the check is refused at the next reconcile
            raise ClusterError(f"keyring Secret {ns}/{ring_name} is not known to be this certificate's keyring")
        missing_labels = {k: v for k, v in labels.items() if k not in ring.labels}
        missing_annotations = {k: v for k, v in annotations.items() if ring.annotations.get(k) != v}
        cluster.patch_secret(
            ns,
            ring_name,
            data=additions,
            resource_version=ring.resource_version,
            labels=missing_labels or None,
            annotations=missing_annotations or None,
        )
        log.info("added %s to keyring Secret %s/%s", ", ".join(sorted(additions)), ns, ring_name)
    after = cluster.read_secret(ns, ring_name)
    if after is None or any(after.data.get(k) != v for k, v in additions.items()):
        raise ClusterError(f"keyring Secret {ns}/{ring_name} does not hold the keys just written")
    return dict(after.data)


def _keep_in_keyring(
    cluster: Cluster, cert: RecordingCertificate, pair: KeyPair, evaluation: Evaluation, emit: Emit
) -> dict[str, bytes]:
    """Make sure the keyring holds the current pair (when its key matches); returns the keyring's data."""
    ns, _ = _ident(cert)
    ring_name = keyring_secret_name(cert)
    ring = cluster.read_secret(ns, ring_name)
    data = dict(ring.data) if ring else {}
    info = evaluation.info
    if info is None or not evaluation.key_matches:
        return data
    additions = keyring_additions(data, info.serial_number, pair)
    if not additions:
        return data
    data = _add_to_keyring(cluster, cert, ring, additions)
    emit(
        EventSpec(
            False,
            CertificateReason.KEYRING_UPDATED,
            f"kept serial {info.serial_number} (certificate and key) in keyring Secret {ns}/{ring_name}; back "
            "it up - every key it holds is needed to read the recordings encrypted to it",
        )
    )
    return data


def _adopt_keyring(
    cluster: Cluster, cert: RecordingCertificate, ring: SecretView | None, evaluation: Evaluation, generated: bool
) -> SourceProblem | None:
    """A keyring made before keyrings named their certificate's uid (labels right, no uid annotation) is
    adopted, i.e. annotated with this certificate's uid, only when it already holds this certificate's current
    pair (certificate and matching key): then it is this certificate's. Otherwise SecretNotManaged, and
    nothing is written into it. A keyring that names a uid, or none at all yet, needs nothing here."""
    uid = str(cert.metadata.get("uid") or "")
    if ring is None or not uid or ANNOTATION_CERTIFICATE_UID in ring.annotations:
        return None
    ns, _ = _ident(cert)
    info = evaluation.info
    if (
        not generated
        and info is not None
        and evaluation.key_matches
        and info.fingerprint in keyring_fingerprints(ring.data)
    ):
        cluster.patch_secret(
            ns,
            ring.name,
            data={},
            resource_version=ring.resource_version,
            annotations={ANNOTATION_CERTIFICATE_UID: uid},
        )
        log.info("keyring Secret %s/%s holds the current pair: annotated with the certificate's uid", ns, ring.name)
        return None
    field = "spec.keyringSecret" if cert.spec.keyring_secret else "the keyring Secret"
    return SourceProblem(
        CertificateReason.SECRET_NOT_MANAGED,
        f"{field}: Secret {ns}/{ring.name} is labelled for this certificate but names no certificate uid "
        f"({ANNOTATION_CERTIFICATE_UID}) and does not hold this certificate's current pair, so it cannot be shown "
        f"to be this certificate's keyring; nothing is written into it. If it is, annotate it: kubectl annotate "
        f"secret {ring.name} -n {ns} {ANNOTATION_CERTIFICATE_UID}={uid}",
    )


def _rotate(
    cluster: Cluster,
    cert: RecordingCertificate,
    source: SecretView,
    pair: KeyPair,
    old: CertificateInfo,
    now: dt.datetime,
) -> tuple[KeyPair, CertificateInfo]:
    """Renew the pair: keyring first (both pairs, checked), then `<name>-tls`. Raises _RotationFailed."""
    ns, _ = _ident(cert)
    generate = cert.spec.generate
    if generate is None:  # pragma: no cover - plan_rotation rotates generated certificates only
        raise _RotationFailed("only generated certificates are rotated")
    try:
        key_pem, cert_pem = renew(
            pair.cert_pem,
            generate.validity_days,
            generate.key_size,
            now=now,
            key_pem=pair.key_pem,
            password=pair.password,
        )
        new = inspect_certificate(cert_pem, key_pem, now=now)
    except (CertificateInvalid, ParameterInvalid) as exc:
        raise _RotationFailed(f"cannot renew the current pair: {exc}") from exc
    new_pair = KeyPair(cert_pem, key_pem)
    ring_name = keyring_secret_name(cert)
    try:
        ring = cluster.read_secret(ns, ring_name)
        data = dict(ring.data) if ring else {}
        additions = keyring_additions(data, old.serial_number, pair)
        additions |= keyring_additions(data | additions, new.serial_number, new_pair)
        if additions:
            data = _add_to_keyring(cluster, cert, ring, additions)
        if keyring_additions(data, old.serial_number, pair) or keyring_additions(data, new.serial_number, new_pair):
            raise _RotationFailed(f"keyring Secret {ns}/{ring_name} does not hold both pairs after writing")
        cluster.patch_secret(
            ns, source.name, data={TLS_CERT: cert_pem, TLS_KEY: key_pem}, resource_version=source.resource_version
        )
    except ClusterError as exc:
        raise _RotationFailed(str(exc)) from exc
    return new_pair, new


def _current_pair(
    cluster: Cluster, cert: RecordingCertificate, now: dt.datetime
) -> tuple[KeyPair, SecretView, bool] | SourceProblem:
    """(pair, the Secret holding it, whether it was generated just now), or why there is none."""
    ns, name = _ident(cert)
    secret_name = source_secret_name(cert)
    view = cluster.read_secret(ns, secret_name)
    source = plan_source(cert, view.data if view else None, view.labels if view else None)
    generated = False
    if isinstance(source, GeneratePair):
        try:
            key_pem, cert_pem = generate_pair(
                source.common_name,
                source.country,
                source.state,
                source.organization,
                source.validity_days,
                source.key_size,
                now=now,
            )
        except ParameterInvalid as exc:
            return SourceProblem(CertificateReason.INVALID_SPEC, f"spec.generate: {exc.message}")
        generated = cluster.create_secret(
            ns,
            secret_name,
            {TLS_CERT: cert_pem, TLS_KEY: key_pem},
            secret_type="kubernetes.io/tls",  # noqa: S106 - a Secret type, not a password
            labels={LABEL_CERTIFICATE: name},
        )
        view = cluster.read_secret(ns, secret_name)  # ours, or one created concurrently
        source = plan_source(cert, view.data if view else None, view.labels if view else None)
    if isinstance(source, SourceProblem):
        return source
    if isinstance(source, GeneratePair) or view is None:
        return SourceProblem(
            CertificateReason.SECRET_NOT_FOUND, f"Secret {ns}/{secret_name} vanished after it was created"
        )
    return source, view, generated


def _update_metrics(states: metrics.ObjectStates, ns: str, name: str, not_after: Any, ready: bool) -> None:
    if isinstance(not_after, str) and not_after:
        try:
            parsed = parse_time(not_after)
        except ValueError:
            parsed = None
        when: float | None = parsed.timestamp() if parsed else None
    elif isinstance(not_after, dt.datetime):
        when = not_after.timestamp()
    else:
        when = None
    with states.lock:
        states.certificates[(ns, name)] = metrics.CertificateState(not_after=when, ready=ready)


def _emit_all(emit: Emit, events: list[EventSpec]) -> None:
    for event in events:
        emit(event)


def reconcile_certificate(
    body: Mapping[str, Any],
    *,
    cluster: Cluster,
    emit: Emit,
    now: dt.datetime,
    settings: OperatorSettings | None = None,
    states: metrics.ObjectStates = metrics.STATE,
) -> dict[str, Any]:
    """One reconciliation of one RecordingCertificate; returns the status fields to patch (only changes).
    (`settings` is accepted for the common reconciler shape; this kind needs none.)"""
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return {}  # being deleted: nothing to do (its Secrets stay), and no metrics state to bring back
    old_status: dict[str, Any] = dict(body.get("status") or {})
    old_conditions: list[dict[str, Any]] | None = old_status.get("conditions")
    try:
        cert = RecordingCertificate.model_validate(dict(body))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]]
        message = f"invalid resource: {'; '.join(problems)}"
        generation = (body.get("metadata") or {}).get("generation")
        conditions = set_condition(
            old_conditions,
            ConditionType.READY,
            "False",
            CertificateReason.INVALID_SPEC,
            message,
            now=now.replace(microsecond=0),
            generation=generation,
        )
        _emit_all(emit, condition_events(old_conditions, conditions, automatic_rotation=False))
        return status_changes(old_status, {"conditions": conditions})
    ns, name = _ident(cert)
    metrics.initialize_certificate(ns, name)
    desired: dict[str, Any] = {"usages": list(cert.spec.usages), "observedGeneration": cert.metadata.get("generation")}
    _emit_all(emit, usage_events(old_status.get("usages"), cert.spec.usages))
    desired["deployedCount"] = count_references(
        name, cluster.list_custom(ns, EXPORTS), cluster.list_custom(ns, BACKUPS)
    )

    # 1. the current pair (generated on first sight), once the keyring is known to be ours to write
    secret_name = source_secret_name(cert)
    ring_view = cluster.read_secret(ns, keyring_secret_name(cert))
    current = keyring_problem(
        cert, ring_view.labels if ring_view else None, ring_view.annotations if ring_view else None
    ) or _current_pair(cluster, cert, now)
    evaluation = evaluate(current[0], now) if not isinstance(current, SourceProblem) else None
    if not isinstance(current, SourceProblem) and evaluation is not None:
        current = _adopt_keyring(cluster, cert, ring_view, evaluation, current[2]) or current
    if isinstance(current, SourceProblem) or evaluation is None:
        assert isinstance(current, SourceProblem)
        conditions = problem_conditions(old_conditions, cert, current, now)
        _emit_all(emit, condition_events(old_conditions, conditions, automatic_rotation=False))
        desired["conditions"] = conditions
        _update_metrics(states, ns, name, old_status.get("notAfter"), ready=False)
        return status_changes(old_status, desired)
    pair, view, generated = current
    if generated and evaluation.info is not None:
        made = evaluation.info
        emit(
            EventSpec(
                False,
                CertificateReason.GENERATED,
                f"generated a {made.key_size}-bit RSA key and a self-signed certificate {made.subject_dn} "
                f"(serial {made.serial_number}, expires {iso_seconds(made.not_after)}) into Secret {ns}/{secret_name}",
            )
        )

    # 2. the keyring keeps every pair whose key matches
    keyring = _keep_in_keyring(cluster, cert, pair, evaluation, emit)

    # 3. rotation of generated certificates
    plan = plan_rotation(cert, evaluation.info, now) if evaluation.info is not None else None
    rotation_error: str | None = None
    rotated = False
    old_info = evaluation.info
    if plan is not None and plan.due and not generated and old_info is not None:
        try:
            pair, new_info = _rotate(cluster, cert, view, pair, old_info, now)
        except _RotationFailed as exc:
            rotation_error = str(exc)
            metrics.record_certificate_rotation(ns, name, ok=False)
            log.warning("rotation of %s/%s failed: %s", ns, name, rotation_error)
        else:
            rotated = True
            metrics.record_certificate_rotation(ns, name, ok=True)
            ring = cluster.read_secret(ns, keyring_secret_name(cert))
            keyring = dict(ring.data) if ring else keyring
            evaluation = evaluate(pair, now)
            plan = plan_rotation(cert, new_info, now)
            emit(
                EventSpec(
                    False,
                    CertificateReason.ROTATED,
                    f"rotated before expiry: serial {old_info.serial_number} "
                    f"(expires {iso_seconds(old_info.not_after)}) is retired, serial {new_info.serial_number} "
                    f"(expires {iso_seconds(new_info.not_after)}) is now in "
                    f"Secret {ns}/{secret_name}; both keys are kept in keyring Secret "
                    f"{ns}/{keyring_secret_name(cert)}. Provision the new certificate with your vendor",
                )
            )

    # 4. status, events, metrics
    info = evaluation.info
    if info is not None:
        desired.update(_status_fields(info))
        old_fingerprint = old_status.get("fingerprint")
        if not rotated and old_fingerprint and old_fingerprint != info.fingerprint:
            kept = old_fingerprint in keyring_fingerprints(keyring)
            emit(
                EventSpec(
                    False,
                    CertificateReason.REPLACED,
                    f"the pair in Secret {ns}/{secret_name} changed: serial {old_status.get('serialNumber')} -> "
                    f"{info.serial_number}; "
                    + (
                        f"the old key is kept in keyring Secret {ns}/{keyring_secret_name(cert)}"
                        if kept
                        else "the old pair was not usable and is not in the keyring"
                    ),
                )
            )
    desired["retired"] = retire(old_status, info, keyring_fingerprints(keyring)) or None
    desired["nextRotationTime"] = iso_seconds(plan.at) if plan is not None and plan.automatic and plan.at else None
    conditions = certificate_conditions(old_conditions, cert, evaluation, plan, now, rotation_error=rotation_error)
    automatic = plan is not None and plan.automatic
    _emit_all(emit, condition_events(old_conditions, conditions, automatic_rotation=automatic))
    desired["conditions"] = conditions
    ready = evaluation.problem is None and (plan is None or plan.error is None)
    _update_metrics(states, ns, name, info.not_after if info else old_status.get("notAfter"), ready)
    return status_changes(old_status, desired)


def register(settings: OperatorSettings, cluster: Cluster) -> None:
    """Register the RecordingCertificate handlers with kopf (called once by the operator's startup).
    Deleting the resource never touches its Secrets (keys outlive it)."""
    register_reconciler(
        CERTIFICATES,
        "certificates",
        reconcile_certificate,
        settings,
        cluster,
        retry_delay=max(settings.reconcile_interval, 5.0),
    )
