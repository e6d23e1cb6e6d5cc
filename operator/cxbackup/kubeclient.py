"""The one way cxbackup gets a configured Kubernetes API client (the operator and the worker's status reports)."""

from __future__ import annotations

import functools
import os

from kubernetes import client, config

__all__ = ["api_client"]


@functools.cache
def api_client() -> client.ApiClient:
    """In-cluster configuration when running in a pod, else KUBECONFIG / ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()
