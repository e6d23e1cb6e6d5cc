"""Recording certificates: CMS encrypt/decrypt with key selection (`cms`), keyrings (`keyring`).

Engines only: nothing in this package imports a Kubernetes client.
"""

from __future__ import annotations

__all__: list[str] = []
