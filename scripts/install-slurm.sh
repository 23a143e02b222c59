#!/usr/bin/env bash
# Install a single-node Slurm toolchain (Debian's slurm-wlm + munge) for the test suite.
# Idempotent: does nothing when the daemons and clients are already on PATH.
# Needs root and apt-get; elsewhere it says why and exits 0, and the Slurm tests skip with that reason.
set -euo pipefail
PKGS="slurm-wlm munge"  # slurmctld, slurmd, the clients (sbatch, srun, scontrol, ...) and munged

have_all() {
    for tool in slurmctld slurmd sbatch srun scontrol scancel sinfo munged munge; do
        command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null 2>&1 || return 1
    done
}

if have_all; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-slurm: Slurm is not installed and this is not root on Debian/Ubuntu (apt-get); Slurm tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# --no-install-recommends: the optional plugins and -dev packages are not needed for one local node
if ! apt-get install -y -q --no-install-recommends $PKGS >/dev/null; then
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $PKGS >/dev/null
fi
have_all || { echo "install-slurm: installed $PKGS but its programs are not on PATH" >&2; exit 1; }
echo "install-slurm: installed $PKGS"
