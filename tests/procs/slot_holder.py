"""Hold a slot lease in another process: argv <runner src> <devices> <per run> <index>; prints 'held' then sleeps."""

import sys
import time

sys.path.insert(0, sys.argv[1])
from arunner.procs import slots  # noqa: E402

pool_slots = slots.make_slots(slots.parse_devices(sys.argv[2]), int(sys.argv[3]))
lease = slots.try_lease(pool_slots[int(sys.argv[4])], "holder")
print("held" if lease else "busy", flush=True)
time.sleep(60)
