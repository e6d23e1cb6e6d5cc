"""Build the container images a local node runs, without Docker or a registry.

hack/build-image.sh builds them as OCI image archives cached under ~/.cache/cxbackup/images (a no-op
when the inputs are unchanged): `cxbackup`, the operator/worker image the Dockerfile describes, and
`pause`, the pod sandbox image. Each archive names its image in its index, so
`ctr -n k8s.io images import <archive>` stores it under the returned reference
(`localhost/<kind>:<tag>`, the tag being a hash of the image's inputs).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

__all__ = ["IMAGE_KINDS", "ImageBuildError", "build_image"]

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
IMAGE_KINDS: Final = ("cxbackup", "pause")


class ImageBuildError(RuntimeError):
    """hack/build-image.sh failed or printed something else than `<archive> <image-ref>`."""


def build_image(kind: str = "cxbackup") -> tuple[Path, str]:
    """Run hack/build-image.sh for `kind` (cached) and return (OCI archive path, image reference)."""
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image {kind!r}; expected one of {', '.join(IMAGE_KINDS)}")
    script = REPO_ROOT / "hack" / "build-image.sh"
    proc = subprocess.run([str(script), kind], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise ImageBuildError(f"{script} {kind} failed with exit code {proc.returncode}; see its output above")
    lines = proc.stdout.strip().splitlines()
    archive, _, ref = (lines[-1] if lines else "").partition(" ")
    if not archive or not ref or not Path(archive).is_file():
        raise ImageBuildError(f"{script} {kind} printed {proc.stdout!r}, not '<archive> <image-ref>'")
    return Path(archive), ref
