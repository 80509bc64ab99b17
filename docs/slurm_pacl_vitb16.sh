#!/usr/bin/env bash
# PACL ViT-B/16 on 2 nodes x 4 GPUs with SLURM (global batch 8 x 512 = 4096, PACL's recipe).
# Lightning reads the SLURM environment: one task per GPU, `srun` starts them; every rank agrees on the run
# directory through the job id (runs/pacl_vitb16/job-<SLURM_JOB_ID>/). Submit: sbatch docs/slurm_pacl_vitb16.sh
#SBATCH --job-name=pacl_vitb16
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=72:00:00
set -euo pipefail
cd "${SLURM_SUBMIT_DIR}"
export DATA_ROOT="${DATA_ROOT:-/data}"
srun .venv/bin/python -m lseg_pacl train pacl_vitb16 \
    trainer.num_nodes=2 trainer.devices=4 trainer.strategy=ddp data.batch_size=512 "$@"
