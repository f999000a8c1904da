"""The installed distribution's version, read once from its metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("lightspeed")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0"
