"""The one place where nnfast prints progress, so it can be captured."""

import sys


def print_msg(message, line_break=True):
    """Write ``message`` to standard output, followed by a newline when ``line_break`` is true."""
    stream = sys.stdout
    if line_break:
        stream.write(message + "\n")
    else:
        stream.write(message)
    stream.flush()


def is_interactive():
    """Return True when standard output is a terminal."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())
