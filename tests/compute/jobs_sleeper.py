"""A job program for the compute tests: ``jobs_sleeper.py sleep SECONDS MARKER term|ignore``.

Sleeps, then appends ``<MODELLOOP_JOB_ID> <CUDA_VISIBLE_DEVICES>`` to MARKER (one line per finished
run, so a test counts how often a job really finished). ``ignore``: SIGTERM is ignored (only SIGKILL
stops it).
"""

import os
import signal
import sys
import time

_, _verb, seconds, marker, on_term = sys.argv[:5]
if on_term == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"job {os.environ.get('MODELLOOP_JOB_ID')} sleeping {seconds}", file=sys.stderr, flush=True)
time.sleep(float(seconds))
with open(marker, "a") as f:
    f.write(f"{os.environ.get('MODELLOOP_JOB_ID')} {os.environ.get('CUDA_VISIBLE_DEVICES')}\n")
