"""A fake candidate: records the devices it was given and when it ran, then sleeps.

argv: <record file> <seconds> [exit code]
"""

import os
import sys
import time

record, seconds = sys.argv[1], float(sys.argv[2])
code = int(sys.argv[3]) if len(sys.argv) > 3 else 0
start = time.time()
print(f"saw CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}", flush=True)
time.sleep(seconds)
with open(record, "w") as fh:
    fh.write(f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')} {os.environ.get('AR_DEVICES', '')} {start} {time.time()}\n")
sys.exit(code)
