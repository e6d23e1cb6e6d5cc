"""Helpers every part of cxbackup shares (engines, worker, controller, CLI); no Kubernetes client here."""
