"""``python -m affectlens.evals.bench --child RESULT CLIP...``: the benchmark's child process.

``affectlens bench`` starts it once per length and device (``child.run_child``); run by hand
it only points there.
"""

import sys

from affectlens.evals.bench import STARTED
from affectlens.evals.bench.child import child_entry

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_entry(sys.argv[1:], STARTED)
    else:
        sys.exit("run the benchmark with `affectlens bench`")
