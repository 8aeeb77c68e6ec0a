"""The one exception type users see for bad input."""


class ConfigError(ValueError):
    """Bad input from the user: the message is one sentence naming the value and what is allowed.

    The CLI turns it into exit code 2 with no traceback.
    """


class RunDirError(ConfigError):
    """A run directory that is missing files, mismatched with its config, or corrupt."""


DISTRIBUTION = "toy-superposition"
"""The name the package is installed by: ``pip install toy-superposition`` (the import package and
the command are ``superposition``; that name on PyPI is an unrelated project)."""


def install_hint(extra: str) -> str:
    """The command that installs one of the package's optional extras."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
