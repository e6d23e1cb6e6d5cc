"""cxbackup: back up contact-center recordings, export contact data encrypted, manage recording certificates."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
