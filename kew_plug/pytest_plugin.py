"""pytest plugin (entry point `pytest11`): fixtures for users' own suites."""

from __future__ import annotations
