"""Imported by the parse workers' fork server (exobot.mail.sandbox preloads it, before any
worker is forked): the workers must not run exobot's main module again.

A process started by multiprocessing's fork server imports the parent's main module before it
runs its target, unless the fork server preloaded that module. CPython's fork server (3.11 to
3.13 at least) never does: it looks for a `main_path` key that the preparation data does not
have (it is `init_main_from_path`). For `exobot run` the main module is the `exobot` script,
so every worker imported the whole application: about 1.8 s of CPU and 100 MB more per worker.
The workers' target is importable by name (exobot.mail.sandbox._worker_main), so they need
nothing of the main module; this turns its re-import off in the fork server, and so in every
worker forked from it. Only those processes are affected. On a Python without the private
hooks, nothing changes (the workers are slower to start, never wrong)."""

from __future__ import annotations

from multiprocessing import spawn


def _main_module_not_needed(*args: object, **kwargs: object) -> None:
    """The workers' target never refers to the main module: do not import it."""


for _name in ("_fixup_main_from_path", "_fixup_main_from_name"):
    if hasattr(spawn, _name):
        setattr(spawn, _name, _main_module_not_needed)
