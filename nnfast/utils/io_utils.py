"""The one place where nnfast prints progress, so it can be captured."""

import sys


def print_msg(message, line_break=True):
    """Write ``message`` to standard output, with a newline unless told not to."""
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
