"""Two-head mask + depth networks, their registry, and the checkpoint file format."""
