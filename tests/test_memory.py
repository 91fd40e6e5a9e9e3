"""glibc malloc tuning: blob-sized buffers come from the heap, not from a fresh mapping each time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appliance import memory

# 200 times, holds three 1 MiB buffers at once (a blob chunk being received, joined and encrypted)
# and frees them; prints the minor page faults that took.
_PROBE = """
import resource, sys
from appliance import memory
if sys.argv[1] == "tuned":
    assert memory.tune_malloc()
block = bytes(1 << 20)
bytearray(block)  # first touch of the heap is not counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    held = [bytearray(block) for _ in range(3)]
    del held
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.skipif(memory._libc() is None, reason="the allocator is not glibc")
def test_tuned_malloc_reuses_the_heap_for_blob_sized_buffers() -> None:
    untuned = _faults("default")
    tuned = _faults("tuned")
    # Returned to the kernel and faulted in again: 256 pages per MiB; reused heap memory: none.
    assert untuned >= 200 * 256, f"the default allocator faulted only {untuned} pages: probe is wrong"
    assert tuned < 1000, f"tuned malloc still faulted {tuned} pages for 600 reused 1 MiB buffers"
