"""DALI loading from shards to torch batches: aligned augmentation, backgrounds by reference."""
