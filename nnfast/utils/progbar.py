"""A Keras-style progress bar for training and evaluation."""

import time

from nnfast.utils import io_utils


def format_value(value):
    """Format a metric value: 4 decimals, or scientific notation below 1e-3."""
    value = float(value)
    if value != 0.0 and abs(value) < 1e-3:
        return f"{value:.4e}"
    return f"{value:.4f}"


def format_duration(seconds):
    """Format a duration as Keras does: 3s, 1m 05s or 1:02:03."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}:{(seconds % 3600) // 60:02d}:{seconds % 60:02d}"


def format_time_per_step(seconds):
    """Format the time of one step in s, ms or us."""
    if seconds >= 1.0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    """Display progress through ``target`` steps.

    Args:
        target: the number of steps, or None when unknown.
        width: the width of the bar in characters.
        verbose: 1 redraws a bar on one line, 2 prints one line at the end,
            0 prints nothing.
        interval: the minimum seconds between redraws, so that drawing stays
            cheap next to short steps.
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05):
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._last_width = 0
        self._values = {}
        self._dynamic = io_utils.is_interactive()

    def update(self, current, values=None, finalize=None):
        """Record progress at step ``current`` with metric ``values``.

        ``values`` maps names to numbers that are shown as they are.
        """
        if values:
            self._values.update(values)
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        if self.verbose == 0:
            return
        now = time.perf_counter()
        if not finalize:
            # Redraws need a terminal: a log file gets only the final line.
            if self.verbose == 2 or not self._dynamic:
                return
            if now - self._last_draw < self.interval:
                return
        self._last_draw = now
        elapsed = now - self._start
        per_step = elapsed / current if current else 0.0
        metrics = "".join(f" - {name}: {format_value(value)}"
                          for name, value in self._values.items())
        if self.verbose == 2:
            line = (f"{current}/{self.target} - {format_duration(elapsed)} - "
                    f"{format_time_per_step(per_step)}{metrics}")
            io_utils.print_msg(line)
            return
        if self.target is not None:
            digits = len(str(self.target))
            filled = int(self.width * min(current, self.target) / self.target)
            bar = "\u2501" * filled + " " * (self.width - filled)
            prefix = f"{current:>{digits}}/{self.target} {bar}"
        else:
            prefix = f"{current}/Unknown"
        if finalize:
            timing = f"{format_duration(elapsed)} {format_time_per_step(per_step)}"
        else:
            remaining = per_step * (self.target - current) if self.target else 0.0
            timing = f"{format_duration(remaining)} {format_time_per_step(per_step)}"
        line = f"{prefix} {timing}{metrics}"
        padding = " " * max(0, self._last_width - len(line))
        self._last_width = len(line)
        io_utils.print_msg("\r" + line + padding, line_break=finalize)
