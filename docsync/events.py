"""Deprecated: the client requests' parsers moved to :mod:`docsync.requests`."""

import warnings

from .requests import *  # noqa: F403
from .requests import MAX_CLOCK, MAX_ID_LENGTH  # noqa: F401

warnings.warn(
    "docsync.events is deprecated: import from docsync.requests.",
    DeprecationWarning,
    stacklevel=2,
)
