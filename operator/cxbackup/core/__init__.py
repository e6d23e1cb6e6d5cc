"""Helpers every part of cxbackup shares (engines, worker, controller, CLI); no Kubernetes client here.

Modules: errors (the error hierarchy and exit codes), times (ISO 8601 and epoch milliseconds),
http (GET with retries for the vendor's JSON APIs), retry (backoff with jitter), redact (secrets out
of messages), files (files written whole under a temporary name; private ones 0600).
"""
