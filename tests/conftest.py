"""Shared fixtures: the real server stack (one per session) and exobot instances on it."""

pytest_plugins = ["stack_fixtures", "harness", "matrix_harness"]
