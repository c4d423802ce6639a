"""Parsers for the workload tools' machine-readable output. Pure functions, tested on captured outputs."""


class ParseError(ValueError):
    """A tool's output could not be read; the message says which tool and why."""
