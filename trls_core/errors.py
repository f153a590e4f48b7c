"""Project-wide exception types.

Users see these messages directly (CLI, DVC stage logs), so every raise must
name the file, the record and the field/key at fault.
"""


class TrlsError(Exception):
    """Base class for errors that are the user's input, not a bug."""


class DataError(TrlsError):
    """Raw or intermediate data is missing, malformed or inconsistent."""


class NetworkError(DataError):
    """A download could not reach its source (no network, DNS, refused, timed out), after its own retries.

    The fetch stage adds how to point at a local mirror instead; a source that
    answers with an error (HTTP 404) or a file that fails its check is a plain
    :class:`DataError`.
    """


class ConfigError(TrlsError):
    """params.yaml (or an override) is invalid; the message names the key."""
