#!/usr/bin/env bash
# PACL ViT-B/16 on 2 nodes x 4 GPUs with SLURM (global batch 8 x 512 = 4096, PACL's recipe).
# Lightning reads the SLURM environment: one task per GPU, `srun` starts them; every rank agrees on the run
# directory through the job id (runs/pacl_vitb16/job-<SLURM_JOB_ID>/). Submit: sbatch docs/slurm_pacl_vitb16.sh
#
# Preemption and time limits: SLURM sends SIGUSR1 to every task 120 s before the limit (--signal); the run saves
# its state before its next step and exits with code 75; this script then requeues the job, which keeps its job
# id, and the requeued job's `resume=auto` continues the same run exactly where it stopped.
# Stalls: a run that stops making progress (a hung DataLoader worker, a rank that stops joining collectives;
# bounds in stall.*) writes its stacks under <run>/stalls/, saves its state where it is consistent and exits
# with code 76; it is requeued the same way.
#SBATCH --job-name=pacl_vitb16
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=72:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
set -uo pipefail
cd "${SLURM_SUBMIT_DIR}"
export DATA_ROOT="${DATA_ROOT:-/data}"
srun .venv/bin/python -m lseg_pacl train pacl_vitb16 resume=auto \
    trainer.num_nodes=2 trainer.devices=4 trainer.strategy=ddp data.batch_size=512 "$@"
status=$?
if [ "${status}" -eq 75 ] || [ "${status}" -eq 76 ]; then  # preempted, out of time or stalled: go again
    scontrol requeue "${SLURM_JOB_ID}"
    exit 0
fi
exit "${status}"
