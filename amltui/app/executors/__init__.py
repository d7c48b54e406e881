"""Executors that start worker processes for queued runs: local slots (GPUs or CPU) and Slurm."""
