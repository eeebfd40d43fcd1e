"""glibc malloc keeps freed blocks for reuse once alexnet asks it to (alexnet/runtime/allocator.py).
Each check runs in a fresh interpreter: the setting is process-wide and cannot be undone."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)

# mallinfo2 (glibc >= 2.33): hblkhd = bytes in mmap'd blocks, fordblks = free bytes kept
PROBE = """
import ctypes, sys, torch
from alexnet.runtime import allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print("skip"); sys.exit()
libc.mallinfo2.restype = Info
if sys.argv[1] == "api":
    applied = allocator.reuse_freed_memory()
elif sys.argv[1] == "cli":
    from alexnet.cli import main
    main(["info", "alexnet2014"])
    applied = allocator._applied
else:
    applied = False
block = torch.ones(2**24)  # 64 MiB, twice glibc's largest mmap threshold
mapped = libc.mallinfo2().hblkhd
del block
kept = libc.mallinfo2().fordblks >= 2**26
if sys.argv[2:] == ["release"]:
    resident = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
    before = resident()
    allocator.release_freed_memory()
    kept = before - resident() < 2**25  # still resident: the 64 MiB were not handed back
print(applied, mapped >= 2**26, kept)
"""


def _probe(*how: str, **environment: str) -> str:
    # the user's own malloc settings would change what this measures
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("ALEXNET_MALLOC", "LD_PRELOAD", "GLIBC_TUNABLES")
                 and not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-c", PROBE, *how], capture_output=True, text=True,
                            env={**inherited, **environment}, timeout=120)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    if last == "skip":
        pytest.skip("this glibc has no mallinfo2")
    return last


def test_by_default_glibc_maps_a_large_block_and_keeps_nothing_after_free() -> None:
    assert _probe("none") == "False True False"


def test_reuse_freed_memory_serves_large_blocks_from_the_heap_and_keeps_them() -> None:
    assert _probe("api") == "True False True"


def test_release_freed_memory_hands_the_kept_blocks_back() -> None:
    assert _probe("api", "release") == "True False False"


def test_every_cli_command_turns_it_on() -> None:
    assert _probe("cli") == "True False True"


def test_the_environment_variable_turns_it_off() -> None:
    assert _probe("api", ALEXNET_MALLOC="system") == "False True False"
