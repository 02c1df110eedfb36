"""hostguard: host-security agent for Linux servers."""

__version__ = "0.1.0"
