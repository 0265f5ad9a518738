"""Seeded synthetic datasets in the original layout: rooms, cut-outs, composites, writers."""
