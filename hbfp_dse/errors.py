"""The error type for bad user input: reported as one message and exit code 2."""


class UserError(ValueError):
    """Bad input from a user (a name, a file, a value); the message names the problem."""
