"""exobot's saved replies (what other helpdesks call text modules or canned responses).

Operators keep named reply texts, one per language, edited on the web under
`/plugins/saved-replies/`. `!template` (`!plantilla`) lists them; `!template suport#N NAME`
(or `!template NAME` in the ticket's thread, or the API action `template`) mails the one called
NAME to the requestor as an ordinary reply, through the ticket service, so it is mailed,
announced and recorded exactly like `!reply`.

The text is the one in the ticket's language (the configured `language` when the ticket's is
unknown), the language of the greeting, signature and headers it is mailed with; a saved reply
without a version in it is refused, saying so, never mailed in another. Only `{name}` / `{nom}`
(the requestor's display name, empty when unknown) and `{ticket}` (`suport#N`) are replaced,
literally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from pydantic import Field

from exobot.core import intents
from exobot.core.actions import (
    ActionCall,
    ActionRefused,
    ActionSpec,
    Answer,
    ArgKind,
    Argument,
    TicketUse,
)
from exobot.core.intents import Intent
from exobot.core.languages import LANGUAGE_NAMES, N_
from exobot.core.model import EntryKind
from exobot.core.references import format_reference
from exobot.core.service import TicketNotFound
from exobot.plugins import Plugin, PluginConfig, PluginContext
from exobot_saved_replies import store
from exobot_saved_replies.texts import (
    Values,
    choose_text,
    normal_name,
    requestor_name,
    substitute,
    wanted_language,
)

HERE = Path(__file__).parent
NAME = "saved-replies"
DOMAIN = "saved_replies"
PAGES = "/plugins/saved-replies/"  # where the saved replies are edited
# History entries that are mail from someone: where the requestor's display name is found.
MAIL_IN = frozenset({EntryKind.MAIL_IN.value, EntryKind.AUTOMATIC_IN.value})

__all__ = ["SavedReplies", "SavedRepliesConfig"]


class SavedRepliesConfig(PluginConfig):
    """Settings under `plugins.saved-replies.`."""

    #: The longest text a saved reply may have, in characters (the web form refuses more).
    max_length: int = Field(10_000, ge=100, le=100_000)


class SavedReplies(Plugin):
    """The plugin: the `template` action, the editing pages and the backup of its table."""

    name = NAME
    config_model = SavedRepliesConfig
    migrations = HERE / "migrations"
    locale = HERE / "locale"
    templates = HERE / "templates"

    ctx: PluginContext

    async def start(self, ctx: PluginContext) -> None:
        """Register the action, the pages and the backup handler."""
        from exobot_saved_replies import web  # the web part needs FastAPI; only when started

        self.ctx = ctx
        ctx.add_action(self.action())
        ctx.web_router(web.router(self))
        ctx.add_menu_entry(N_("Saved replies"), "/")
        ctx.add_data_handlers(backup=self._backup)

    def action(self) -> ActionSpec:
        """The `template` action, declared once for chat, `!help` and the API."""
        return ActionSpec(
            "template",
            N_("!template {ref} name"),
            N_(
                "Mails the requestor the saved reply with that name, in the ticket's language; "
                "without a name, lists the saved replies."
            ),
            aliases={"ca": ("plantilla",), "es": ("plantilla",)},
            arguments=(
                Argument(
                    "name",
                    ArgKind.WORD,
                    required=False,
                    label=N_("the saved reply's name"),
                    description="the saved reply's name (one word, lower case)",
                    suggest=self.names,
                ),
            ),
            ticket=TicketUse.OPTIONAL,
            handler=self.template,
            domain=DOMAIN,
            owner=NAME,
            # The web's form: its button mails the member at once, and says so.
            web_label=N_("Send a saved reply"),
            web_button=N_("Send to the member"),
            api_summary="Send a saved reply",
            api_description=(
                'Mail the member the saved reply called `name` (body `{"name": "…"}`), in the '
                "ticket's language (the configured one when the ticket's is unknown), with "
                "`{name}`/`{nom}` and `{ticket}` filled in, exactly as a reply. An unknown name "
                "answers 400 `unknown_saved_reply` listing the known ones; a saved reply without "
                "a version in that language, 400 `saved_reply_not_in_language` (it is never "
                "mailed in another)."
            ),
        )

    # --- the action ------------------------------------------------------------------------

    async def template(self, call: ActionCall) -> Intent | Answer:
        """`!template`: the list; `!template suport#N NAME`: the Reply intent with its text."""
        raw = str(call.args.get("name") or "").strip()
        if not raw:
            return await self._list(call.language)
        name = normal_name(raw) or raw
        if call.ticket is None:
            example = f"{self.ctx.settings.prefix}#N"
            raise ActionRefused(
                "missing_ticket",
                self.ctx.say(
                    call.language,
                    "Which ticket? Write !template {ref} {name}, or write it in the ticket's thread.",
                    ref=example,
                    name=name,
                ),
            )
        async with self.ctx.reading() as reader:
            ticket = await reader.get_ticket(call.ticket)
            history = await reader.history(call.ticket) if ticket is not None else []
        if ticket is None:
            reference = format_reference(self.ctx.settings.prefix, call.ticket)
            raise TicketNotFound("not_found", f"{reference} does not exist", ticket=reference)
        async with self.ctx.connection() as conn:
            texts = await store.texts(conn, name)
        if not texts:
            raise ActionRefused("unknown_saved_reply", await self._unknown(call.language, name))
        chosen = choose_text(texts, ticket.language, self.ctx.settings.language)
        if chosen is None:
            # Mailed in another language, the text would sit under a greeting, a signature
            # and headers in the ticket's: refused, and the volunteer told what to do.
            language = wanted_language(ticket.language, self.ctx.settings.language)
            raise ActionRefused(
                "saved_reply_not_in_language",
                self.ctx.say(
                    call.language,
                    "The saved reply “{name}” has no version in {language_name}: write the "
                    "reply or add that version.",
                    name=name,
                    language_name=self.ctx.say(call.language, LANGUAGE_NAMES[language]),
                ),
            )
        mails = [entry.data for entry in history if entry.kind.value in MAIL_IN]
        values = Values(
            name=requestor_name(ticket.requestor, mails),
            ticket=format_reference(self.ctx.settings.prefix, ticket.number),
        )
        return intents.Reply(ticket.number, substitute(chosen[1], values))

    async def names(self, ticket: int | None, language: str) -> list[str]:
        """The names of the saved replies, alphabetically (the web form suggests them)."""
        async with self.ctx.connection() as conn:
            replies = await store.all_replies(conn)
        return sorted({reply.name for reply in replies})

    async def _list(self, language: str) -> Answer:
        async with self.ctx.connection() as conn:
            replies = await store.all_replies(conn)
        if not replies:
            text = self.ctx.say(
                language,
                "There are no saved replies yet: add them on the website, at {path}.",
                path=PAGES,
            )
            return Answer(text, str(escape(text)))
        languages: dict[str, list[str]] = {}
        for reply in replies:
            languages.setdefault(reply.name, []).append(reply.language)
        example = f"{self.ctx.settings.prefix}#N"
        head = self.ctx.say(
            language,
            "Saved replies (send one with !template {ref} name):",
            ref=example,
        )
        lines = [f"• {name} ({', '.join(langs)})" for name, langs in languages.items()]
        html = Markup("<p>{}</p><ul>{}</ul>").format(
            head,
            Markup("").join(
                Markup("<li><code>{}</code> ({})</li>").format(name, ", ".join(langs))
                for name, langs in languages.items()
            ),
        )
        return Answer("\n".join([head, *lines]), str(html))

    async def _unknown(self, language: str, name: str) -> str:
        async with self.ctx.connection() as conn:
            replies = await store.all_replies(conn)
        known = sorted({reply.name for reply in replies})
        if not known:
            return self.ctx.say(
                language,
                "There is no saved reply called “{name}”, and none exists yet.",
                name=name,
            )
        return self.ctx.say(
            language,
            "There is no saved reply called “{name}”. Known: {known}.",
            name=name,
            known=", ".join(known),
        )

    async def _backup(self) -> dict[str, Any]:
        async with self.ctx.connection() as conn:
            return await store.backup(conn)
