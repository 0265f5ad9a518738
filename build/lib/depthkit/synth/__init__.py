"""Seeded synthetic datasets in the original layout: rooms, cut-outs, composites, writers."""

from depthkit.synth.dataset import (
    SynthConfig,
    SynthResult,
    render_sample,
    sample_paths,
    synthesize,
)

__all__ = ["SynthConfig", "SynthResult", "render_sample", "sample_paths", "synthesize"]
