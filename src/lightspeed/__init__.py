"""lightspeed: an assistant API that records transcripts and feedback for the collector."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lightspeed")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
