"""The detection matrix: cells of scenario x QEMU x arch x smp x load x accel, run N times
each, results kept as JSON lines so that a rerun resumes, and sharded over machines."""
