"""The one exception type users see for bad input."""


class ConfigError(ValueError):
    """Bad input from the user: the message is one sentence naming the value and what is allowed.

    The CLI turns it into exit code 2 with no traceback.
    """


class RunDirError(ConfigError):
    """A run directory that is missing files, mismatched with its config, or corrupt."""
