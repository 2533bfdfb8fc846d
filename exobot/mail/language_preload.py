"""Imported by the parse workers' fork server (exobot.mail.sandbox preloads it) to load the
language models once, before any worker is forked: every worker then shares the models' pages
with the fork server (copy-on-write, never written) instead of loading a copy of its own, about
20 MB each, and a replacement worker is ready at once. Importing it anywhere else only costs
that memory."""

from __future__ import annotations

from exobot.mail.language import warm_up

warm_up()
