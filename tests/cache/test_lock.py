"""One process per cache directory."""

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cache.lock import CacheLock
from appliance.errors import ConfigError


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time;from pathlib import Path;from appliance.cache.lock import CacheLock;"
            f"l=CacheLock(Path({str(tmp_path)!r}));l.acquire();print('held',flush=True);time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as info:
            CacheLock(tmp_path).acquire()
        assert f"pid {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    # The lock died with its holder (as after kill -9): it can be taken again.
    with CacheLock(tmp_path):
        pass
