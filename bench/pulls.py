"""Timed ``skopeo copy`` pulls into a throwaway ``dir:`` destination."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from tests.fixtures.clients import skopeo_copy
from tests.fixtures.process import FixtureError


def timed_pull(
    source: str, scratch: Path, *, cert_dir: Path, https_proxy: str | None = None, timeout: float = 600
) -> float:
    """Seconds one ``skopeo copy docker://SOURCE dir:...`` took; raises if the client failed."""
    dest = scratch / f"pull-{uuid.uuid4().hex[:12]}"
    try:
        result = skopeo_copy(
            f"docker://{source}", f"dir:{dest}", https_proxy=https_proxy, cert_dir=cert_dir, timeout=timeout
        )
        if not result.ok:
            raise FixtureError(f"pull of {source} failed:\n{result.output[-3000:]}")
        return result.duration
    finally:
        shutil.rmtree(dest, ignore_errors=True)
