"""Training: config, runtime (precision, devices, DDP), losses, optimisers, the loop, saving."""
