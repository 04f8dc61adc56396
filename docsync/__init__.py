"""docsync: a DocSync server for Django."""

__version__ = "0.2.0"
