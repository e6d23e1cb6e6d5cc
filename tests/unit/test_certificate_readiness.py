"""api.certificate.certificate_readiness: may an ExportJob encrypt to this RecordingCertificate now?
Read from the conditions the certificate controller really writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cxbackup.api.certificate import RecordingCertificate, certificate_readiness
from cxbackup.certs.generate import generate_pair
from cxbackup.controller.certificate.decisions import KeyPair, certificate_conditions, evaluate, plan_rotation

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
SPEC = {"generate": {"commonName": "Genesys Recording", "country": "US", "state": "California", "organization": "G"}}


def _status(days: int, now: dt.datetime, generation: int = 3) -> dict[str, Any]:
    """The status the certificate controller writes for a generated pair valid `days` from T0, at `now`."""
    rcert = RecordingCertificate.model_validate({"metadata": {"name": "rc", "generation": generation}, "spec": SPEC})
    key, cert = generate_pair("Genesys Recording", "US", "California", "G", days, now=T0)
    evaluation = evaluate(KeyPair(cert, key), now)
    plan = plan_rotation(rcert, evaluation.info, now) if evaluation.info is not None else None
    return {"conditions": certificate_conditions(None, rcert, evaluation, plan, now)}


def test_a_valid_certificate_is_ready() -> None:
    readiness = certificate_readiness(_status(365, T0), generation=3)
    assert readiness.ready and readiness.reason == "CertificateValid"


def test_an_expired_certificate_is_not_ready_and_says_why() -> None:
    readiness = certificate_readiness(_status(1, T0 + dt.timedelta(days=2)), generation=3)
    assert (readiness.ready, readiness.reason) == (False, "Expired")
    assert readiness.message.startswith("certificate expired on 2026-03-02")


def test_no_status_or_an_older_generation_is_not_trusted() -> None:
    assert certificate_readiness(None) == certificate_readiness({"conditions": []})
    assert (certificate_readiness(None).ready, certificate_readiness(None).reason) == (False, "NotChecked")
    stale = certificate_readiness(_status(365, T0, generation=3), generation=4)
    assert (stale.ready, stale.reason) == (False, "NotChecked") and "generation 4" in stale.message
    problem = {"conditions": [{"type": "Ready", "status": "False", "reason": "KeyTooSmall", "message": "RSA 1024"}]}
    assert certificate_readiness(problem) == certificate_readiness(problem, generation=9)
    assert certificate_readiness(problem).reason == "KeyTooSmall"
