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
def test_retained_memory_stops_page_faults_on_reuse():
    """With glibc's defaults an 8 MiB temporary is mmap'ed and unmapped each time (about 2048 page
    faults per allocation); retained, only the heap's first growth faults."""
    faults = {}
    for on in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", SNIPPET, on], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        faults[on] = int(out.stdout.split()[-1])
    assert faults["1"] * 4 < faults["0"], faults  # measured: 8192 (first growth of the heap) vs 71176


def test_retain_freed_memory_rejects_bad_limits():
    from worldline.runtime import retain_freed_memory

    for bad in (0, -1, 1 << 30):
        with pytest.raises(ValueError, match="limit_bytes"):
            retain_freed_memory(bad)
