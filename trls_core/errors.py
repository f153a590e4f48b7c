"""Project-wide exception types.

Users see these messages directly (CLI, DVC stage logs), so every raise must
name the file, the record and the field/key at fault.
"""


class TrlsError(Exception):
    """Base class for errors that are the user's input, not a bug."""


class DataError(TrlsError):
    """Raw or intermediate data is missing, malformed or inconsistent."""


class ConfigError(TrlsError):
    """params.yaml (or an override) is invalid; the message names the key."""
