"""WebDataset shards: the sample schema, plan, conversion, tar writing, manifest, verify."""
