"""`python -m depthkit` (used by torchrun: `torchrun -m depthkit train ...`)."""

from depthkit.cli import main

main()
