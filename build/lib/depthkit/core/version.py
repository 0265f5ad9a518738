"""The package version, down in core so that every layer (e.g. the shard manifest) can record
it without importing the top-level package."""

__version__ = "0.1.0"
