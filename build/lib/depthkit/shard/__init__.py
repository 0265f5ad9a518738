"""WebDataset shards: the sample schema, plan, conversion, tar writing, manifest, verify."""

from depthkit.shard.config import ShardConfig, ShardSummary, format_shard_summary, parse_int_list
from depthkit.shard.manifest import load_manifest
from depthkit.shard.plan import SplitConfig
from depthkit.shard.run import write_shards
from depthkit.shard.verify import format_report, verify_shards

__all__ = ["ShardConfig", "ShardSummary", "SplitConfig", "format_report",
           "format_shard_summary", "load_manifest", "parse_int_list", "verify_shards",
           "write_shards"]
