"""Errors a user can fix: the CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class JumpsearchError(Exception):
    """Bad input (space file, configuration, data set, storage); the message names what and where."""


class ConfigError(JumpsearchError, ValueError):
    """A configuration that cannot be built, or a value of the wrong type or range."""
