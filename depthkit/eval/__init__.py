"""Measuring a model: metrics, `depthkit eval` on shards, `depthkit predict` on image pairs."""
