"""describe: annotations -> pose descriptions, from an LLM (any OpenAI-compatible endpoint) or the offline
rules describer, resumable through a journal of content-keyed rows.

    focus-pipeline describe --annotations mpii --backend rules
    focus-pipeline describe --annotations mpii --backend openai --model gpt-4o-mini --concurrency 32
    focus-pipeline describe --annotations mpii --model gpt-4o --with-image --images mpii/images
"""

from pipeline.describe.config import DescribeConfig, Shard
from pipeline.describe.stage import describe

__all__ = ["DescribeConfig", "Shard", "describe"]
