"""focus-pipeline: MPII annotations -> LLM pose descriptions -> dataset -> CLIP/FocusCLIP -> zero-shot."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("focus-pipeline")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+local"
