"""Run one wave in its own process: argv <runner src> <lock dir> <out dir> <count> <seconds> <prefix>."""

import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, sys.argv[1])
os.environ["AR_DEVICE_LOCK_DIR"] = sys.argv[2]
from arunner.procs import slot_pool, slots  # noqa: E402

out, count, seconds, prefix = Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
host = Path(__file__).with_name("slot_host.py")
cands = [
    slot_pool.SlotJob(
        name=f"{prefix}{i}",
        cmd=[sys.executable, str(host), str(out / f"{prefix}{i}.rec"), seconds],
        cwd=out,
        env=dict(os.environ),
        log_path=out / f"{prefix}{i}.log",
        budget_s=60,
        grace_s=2,
        marker=("AR_TEST_RUN", uuid.uuid4().hex),
    )
    for i in range(count)
]
pool = slots.SlotPool(slots.make_slots(["0", "1", "2", "3"], 1), prefix)
outcomes = slot_pool.run_jobs(cands, pool)
print(" ".join(str(o.result.exit_code) for o in outcomes), flush=True)
