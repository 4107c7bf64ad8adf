"""focus-pipeline: MPII pose annotations -> LLM pose descriptions -> dataset -> CLIP/FocusCLIP -> zero-shot eval."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("focus-pipeline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
