"""One exception type for bad user input: the pipeline prints its message as a one-line error."""


class ScanbenchError(ValueError):
    """Bad input or configuration; the message names the thing to fix."""
