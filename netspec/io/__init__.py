"""Files netspec reads and writes: checkpoints, weight files, and the atomic writer."""
