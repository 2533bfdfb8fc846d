"""Starting an exobot instance whose parsing workers run a test hook from parse_hooks."""

from __future__ import annotations

import asyncio

from harness import DEADLINE

from exobot.app import App
from exobot.mail.sandbox import ParseSandbox, SandboxSettings


async def start_with_parser(inst, parser: str) -> App:  # noqa: ANN001 - a harness Instance
    """Start `inst` with its configured parse limits, parsing with `parser` ("module:name")."""
    app = App(inst.config)
    await app.build()
    await app.processor.parser.close()
    limits = app.processor.parser.settings
    app.processor.parser = ParseSandbox(
        SandboxSettings(timeout=limits.timeout, memory=limits.memory, parser=parser)
    )
    inst.app = app
    await app.start()
    await asyncio.wait_for(app.intake.connected.wait(), DEADLINE)
    return app
