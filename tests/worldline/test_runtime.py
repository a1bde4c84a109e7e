import subprocess
import sys

import pytest

SNIPPET = """
import resource, sys, torch
from worldline.runtime import retain_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "1":
    assert retain_freed_memory() is True and retain_freed_memory() is True
x = torch.ones(1 << 21)  # 8 MiB temporaries, allocated and freed in a loop
y = x * 2
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    y = x * 2
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_memory_keeps_page_faults_low():
    """Retained, a loop of 8 MiB temporaries faults only while the heap first grows (a few 8 MiB
    regions), not on every allocation (50 x 2048 pages). Retained, 42 runs on one machine gave
    4096 to 12288 faults (2 to 6 regions; 12288 in 11 of them), so the bound is 10 regions, a fifth
    of the per-allocation count. glibc's own adaptive threshold sometimes achieves that too and
    sometimes not (6k, 12k, 69k and 71k faults were all seen for the default), so the default is
    printed, not asserted."""
    faults = {}
    for on in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", SNIPPET, on], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        faults[on] = int(out.stdout.split()[-1])
    print(faults)
    assert faults["1"] <= 10 * 2048, faults  # the first growths only, not 50 x 8 MiB of pages


def test_retain_freed_memory_rejects_bad_limits():
    from worldline.runtime import retain_freed_memory

    for bad in (0, -1, 1 << 30):
        with pytest.raises(ValueError, match="limit_bytes"):
            retain_freed_memory(bad)
