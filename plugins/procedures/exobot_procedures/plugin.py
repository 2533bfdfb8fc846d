"""The procedures plugin: `!procedure`, `!procedures`, `!done`, `!cancel` and `!member` (with
their Catalan and Spanish words), the members-only scope on new mail, the pending procedures
in the treasury room's digest, the job that settles effects a crash left unapplied, the
requestor's notices (templates/<language>/) and `exobot members import FILE.csv`.

The one path that creates and finishes procedures is service.py (chat here, the web and the
API too); store.py keeps them; effects.py applies their effects on the ticket.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from exobot.core import intents
from exobot.core.actions import (
    ALL_CHANNELS,
    CHAT_ONLY,
    ActionCall,
    ActionSpec,
    Answer,
    ArgKind,
    Argument,
    TicketUse,
)
from exobot.core.languages import N_
from exobot.core.model import Actor
from exobot.core.references import format_reference
from exobot.core.service import InvalidRequest
from exobot.plugins import NewMail, Plugin, PluginContext
from exobot_procedures import effects, members, personal, service, store
from exobot_procedures.config import ProceduresConfig
from exobot_procedures.procedures import (
    ParseError,
    is_member_number,
    parse_filter,
    parse_procedure,
    split_ref,
    type_words,
)
from exobot_procedures.service import ProcedureRefused, type_name
from exobot_procedures.store import Procedure, ProcedureFilter

HERE = Path(__file__).parent
NAME = "procedures"
LISTED = 20  # procedures listed in chat; the web page has the rest
DIGEST_LISTED = 10

#: What each ParseError code says (message ids in the plugin's domain).
PARSE_WORDS = {
    "missing_type": N_(
        "Which procedure? Write !procedure {ref} TYPE MEMBER [SERVICE] [note]. Types: {known}."
    ),
    "missing_member": N_(
        "A {type} needs the member number: !procedure {ref} {type} MEMBER [note]."
    ),
    "bad_member": N_(
        "“{word}” is not a member number: !procedure {ref} {type} MEMBER [note]."
    ),
    "missing_service": N_(
        "A {type} needs the service reference: !procedure {ref} {type} MEMBER SERVICE [note]."
    ),
    "service_too_long": N_("The service reference is too long: at most {limit} characters."),
    "missing_ref": N_("Which procedure? Write its reference, like P-12."),
    "bare_number": N_(
        "“{number}” alone is a ticket number: write the procedure's reference, like P-{number}."
    ),
    "bad_ref": N_("“{word}” is not a procedure reference: write it like P-12."),
    "bad_filter": N_(
        "“{word}” is not a filter: write pending, all, a member number, a type ({known}) or "
        "a ticket reference."
    ),
}


@functools.cache
def duration_text(delta: timedelta) -> str:
    """`7 d`, `36 h`, `90 min`: a configured duration as people read it."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class Procedures(Plugin):
    """Treasury procedures on record and the member directory (`!procedure`, `!done`, …)."""

    name = NAME
    config_model = ProceduresConfig
    migrations = HERE / "migrations"
    locale = HERE / "locale"
    templates = HERE / "templates"
    #: `exobot members import FILE.csv` as well as `exobot procedures import FILE.csv`.
    cli_aliases = ("members",)

    ctx: PluginContext
    config: ProceduresConfig

    # --- life -------------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        """Check the queue, register the actions, the new-mail hook, the digest lines, the
        settling job and (when present) the web pages and API routes."""
        self.ctx = ctx
        self.config = ctx.config  # type: ignore[assignment]
        # Where the settling job's next pass starts (an event id; 0: from the oldest).
        self._settle_after = 0
        if self.config.queue not in ctx.settings.queues:
            known = ", ".join(sorted(ctx.settings.queues))
            raise ValueError(
                f"plugins.procedures.queue: unknown queue {self.config.queue!r} (known: {known})"
            )
        for spec in self.actions():
            ctx.add_action(spec)
        ctx.on_new_mail(self.on_new_mail)
        ctx.add_digest_lines(self.digest_lines, queue=self.config.queue)
        ctx.schedule(self.settle, every=effects.SETTLE_EVERY, name="settle")
        # `exobot privacy export|erase ADDRESS`: the member's addresses, directory entry and
        # procedures (personal.py).
        ctx.add_data_handlers(
            export=functools.partial(personal.export, ctx),
            erase=functools.partial(personal.erase, ctx),
            related=functools.partial(personal.related, ctx),
        )
        # The web pages and API routes live in their own modules (web.py, api.py), each with
        # `register(plugin)`; the plugin works without them.
        for module in ("web", "api"):
            if importlib.util.find_spec(f"exobot_procedures.{module}") is not None:
                loaded = importlib.import_module(f"exobot_procedures.{module}")
                register = getattr(loaded, "register", None)
                if register is not None:
                    register(self)

    def reference(self, number: int) -> str:
        """A ticket's public reference, `suport#N`."""
        return format_reference(self.ctx.settings.prefix, number)

    def render_mail(self, what: str, language: str, **values: object) -> str:
        """The notice `templates/<language>/<what>.txt.j2` as plain text (exobot's language's
        when the ticket's has none)."""
        return self.ctx.render_mail(what, language, **values)

    async def settle(self) -> int:
        """The job: apply the effects a crash left unapplied, one bounded batch a pass;
        returns how many events it settled."""
        settled, self._settle_after = await effects.settle_leftovers(self, self._settle_after)
        return settled

    # --- actions ----------------------------------------------------------------------------

    def actions(self) -> list[ActionSpec]:
        """The five actions, declared once (chat, `!help`; `!member` on the web and API too;
        the web and the API create and finish procedures through service.py)."""
        return [
            ActionSpec(
                "procedure",
                N_("!procedure {ref} TYPE MEMBER [SERVICE] [note…]"),
                N_(
                    "Records a treasury procedure (join, leave, email, bank, service-add, "
                    "service-remove) and moves the ticket to the treasury queue; the note is a "
                    "reference, never bank or identity data."
                ),
                aliases={"ca": ("tramit", "tràmit"), "es": ("tramite", "trámite")},
                arguments=(
                    Argument(
                        "text",
                        ArgKind.TEXT,
                        required=False,
                        label=N_("the type, member, service and note"),
                    ),
                ),
                ticket=TicketUse.REQUIRED,
                handler=self.procedure,
                channels=CHAT_ONLY,
            ),
            ActionSpec(
                "procedures",
                N_("!procedures [pending|MEMBER|TYPE|{ref}|all]"),
                N_("Lists procedures: the pending ones, a member's, a type's or a ticket's."),
                aliases={"ca": ("tramits", "tràmits"), "es": ("tramites", "trámites")},
                arguments=(
                    Argument("filter", ArgKind.TITLE, required=False, label=N_("the filter")),
                ),
                ticket=TicketUse.NONE,
                handler=self.procedures,
                channels=CHAT_ONLY,
            ),
            ActionSpec(
                "done",
                N_("!done P-12 [NUMBER] [note…]"),
                N_(
                    "Marks a procedure done and tells the requestor; the ticket's status does "
                    "not change. A join needs the new member's number if it was not given."
                ),
                aliases={"ca": ("fet",), "es": ("hecho",)},
                arguments=(
                    Argument("text", ArgKind.TEXT, required=False, label=N_("the procedure")),
                ),
                ticket=TicketUse.NONE,
                handler=self.done,
                channels=CHAT_ONLY,
            ),
            ActionSpec(
                "cancel",
                N_("!cancel P-12 reason…"),
                N_("Cancels a procedure and tells the requestor; the ticket's status does not "
                   "change."),
                aliases={"ca": ("anulla", "anul·la"), "es": ("anula",)},
                arguments=(
                    Argument(
                        "text", ArgKind.TEXT, required=False, label=N_("the procedure and reason")
                    ),
                ),
                ticket=TicketUse.NONE,
                handler=self.cancel,
                channels=CHAT_ONLY,
            ),
            ActionSpec(
                "member",
                N_("!member {ref} NUMBER"),
                N_("Links the ticket to a member of the directory and clears its "
                   "“not a member” flag."),
                aliases={"ca": ("soci",), "es": ("socio",)},
                arguments=(
                    Argument(
                        "number",
                        ArgKind.WORD,
                        label=N_("the member number"),
                        description="the member's number in the directory",
                    ),
                ),
                ticket=TicketUse.REQUIRED,
                handler=self.member,
                channels=ALL_CHANNELS,
                web_label=N_("Link to a member"),
                web_button=N_("Link"),
                api_summary="Link the ticket to a member",
                api_description=(
                    "Links the ticket to a member of the directory and clears its non-member "
                    "flag. Refusals answer 400."
                ),
            ),
        ]

    def _parse_refusal(self, error: ParseError, language: str, ticket: int | None) -> ProcedureRefused:
        params: dict[str, Any] = {
            "ref": self.reference(ticket) if ticket is not None else "suport#N",
            "known": ", ".join(type_words(self.config, language)),
            **error.params,
        }
        if error.code == "unknown_type":
            return service.unknown_type(self, str(error.params.get("word", "")), language)
        return ProcedureRefused(error.code, self.ctx.say(language, PARSE_WORDS[error.code], **params))

    def _answer(self, body: str) -> Answer:
        return Answer(body, str(escape(body)))

    def _describe(self, procedure: Procedure, language: str) -> str:
        """`P-12 (alta de soci, 1234)`."""
        what = type_name(self, procedure.type, language)
        service_ref = f", {procedure.service}" if procedure.service else ""
        return f"{procedure.ref} ({what}, {procedure.member}{service_ref})"

    async def procedure(self, call: ActionCall) -> Answer:
        """`!procedure suport#N TYPE MEMBER [SERVICE] [note…]`. The command's key
        (`call.key`) is recorded with the procedure: the command delivered again after that
        commit (a crash or a database error before the answer's) gets the same answer, with
        no second procedure and no second mail."""
        language = call.language
        assert call.ticket is not None  # TicketUse.REQUIRED
        try:
            parsed = parse_procedure(self.config, str(call.args.get("text") or ""))
        except ParseError as error:
            raise self._parse_refusal(error, language, call.ticket) from None
        procedure = await service.create_procedure(
            self,
            ticket=call.ticket,
            type=parsed.type,
            member=parsed.member,
            service=parsed.service,
            note=parsed.note,
            actor=call.actor,
            language=language,
            key=call.key,
        )
        # Whether it moved the ticket: what its `created` event had to do (the same answer
        # when the command is delivered again, the ticket already moved).
        async with self.ctx.reading() as reader:
            created = next(iter(await store.history(reader.conn, procedure.id)), None)
        parts = [
            self.ctx.say(
                language,
                "{procedure} recorded on {ref}: pending.",
                procedure=self._describe(procedure, language),
                ref=self.reference(procedure.ticket),
            )
        ]
        if created is not None and "move" in created.effects:
            parts.append(
                self.ctx.say(language, "The ticket moves to {queue}.", queue=self.config.queue)
            )
        if self.config.types[procedure.type].notify:
            parts.append(self.ctx.say(language, "The requestor is told by mail."))
        parts.append(
            self.ctx.say(language, "When it is done: !done {procedure}", procedure=procedure.ref)
        )
        return self._answer(" ".join(parts))

    async def procedures(self, call: ActionCall) -> Answer:
        """`!procedures [pending|MEMBER|TYPE|suport#N|all]`."""
        language = call.language
        try:
            wanted = parse_filter(
                self.config, str(call.args.get("filter") or ""), self.ctx.settings.prefix
            )
        except ParseError as error:
            raise self._parse_refusal(error, language, None) from None
        where = ProcedureFilter(
            type=wanted.type, state=wanted.state, member=wanted.member, ticket=wanted.ticket
        )
        async with self.ctx.reading() as reader:
            found = await store.search(reader.conn, where, limit=LISTED + 1)
        if wanted.member is not None:
            head = self.ctx.say(language, "Procedures of member {member}:", member=wanted.member)
        elif wanted.type is not None:
            head = self.ctx.say(
                language, "Procedures of type {type}:", type=type_name(self, wanted.type, language)
            )
        elif wanted.ticket is not None:
            head = self.ctx.say(
                language, "Procedures of {ref}:", ref=self.reference(wanted.ticket)
            )
        elif wanted.state == "pending":
            head = self.ctx.say(language, "Pending procedures:")
        else:
            head = self.ctx.say(language, "Procedures:")
        if not found:
            body = f"{head} " + self.ctx.say(language, "none.")
            return self._answer(body)
        lines = [self._line(procedure, language) for procedure in found[:LISTED]]
        if len(found) > LISTED:
            lines.append(
                self.ctx.say(language, "… and more: the web page lists them all.")
            )
        html = Markup("<p>{}</p><ul>{}</ul>").format(
            head, Markup("").join(Markup("<li>{}</li>").format(line) for line in lines)
        )
        return Answer("\n".join([head, *(f"• {line}" for line in lines)]), str(html))

    def _line(self, procedure: Procedure, language: str) -> str:
        asked = procedure.asked_at.astimezone(self.ctx.timezone).strftime("%Y-%m-%d")
        return self.ctx.say(
            language,
            "{procedure} on {ref}, {state}, asked on {date} by {who}",
            procedure=self._describe(procedure, language),
            ref=self.reference(procedure.ticket),
            state=service.state_name(self, procedure.state, language),
            date=asked,
            who=procedure.asked_by,
        )

    async def _finish(self, call: ActionCall, state: str) -> Answer:
        language = call.language
        try:
            number, rest = split_ref(str(call.args.get("text") or ""))
        except ParseError as error:
            raise self._parse_refusal(error, language, None) from None
        procedure = await service.get_or_refuse(self, number, language)
        member_number = None
        kind = self.config.types.get(procedure.type)
        if (
            state == "done"
            and kind is not None
            and kind.directory == "join"
            and not is_member_number(self.config, procedure.member)
        ):
            first, _, after = rest.partition(" ")
            first_line, newline, more = first.partition("\n")
            if first_line and is_member_number(self.config, first_line):
                member_number = first_line
                rest = (more + (" " if after else "") + after) if newline else after
        finished = await service.finish_procedure(
            self,
            number,
            state=state,  # type: ignore[arg-type]
            note=rest,
            actor=call.actor,
            language=language,
            member_number=member_number,
            key=call.key,
        )
        async with self.ctx.reading() as reader:
            finished = await store.get(reader.conn, finished.id) or finished
        msgid = (
            N_("{procedure} is done.") if state == "done" else N_("{procedure} is cancelled.")
        )
        parts = [self.ctx.say(language, msgid, procedure=self._describe(finished, language))]
        if state == "done" and kind is not None and kind.directory == "join":
            parts.append(
                self.ctx.say(language, "Member {number} is in the directory.",
                             number=finished.member)
            )
        elif state == "done" and kind is not None and kind.directory == "leave":
            parts.append(
                self.ctx.say(language, "Member {number} is inactive in the directory.",
                             number=finished.member)
            )
        if kind is None or kind.notify:
            parts.append(self.ctx.say(language, "The requestor is told by mail."))
        parts.append(self.ctx.say(language, "The ticket's status does not change."))
        return self._answer(" ".join(parts))

    async def done(self, call: ActionCall) -> Answer:
        """`!done P-12 [NUMBER] [note…]`."""
        return await self._finish(call, "done")

    async def cancel(self, call: ActionCall) -> Answer:
        """`!cancel P-12 reason…`."""
        return await self._finish(call, "cancelled")

    async def member(self, call: ActionCall) -> Answer:
        """`!member suport#N NUMBER`: link the ticket to a member; clear its non-member flag."""
        language = call.language
        assert call.ticket is not None
        number = str(call.args.get("number") or "").strip()
        ref = self.reference(call.ticket)
        if not is_member_number(self.config, number):
            raise ProcedureRefused(
                "bad_member",
                self.ctx.say(language, "“{word}” is not a member number.", word=number[:40]),
            )
        async with self.ctx.reading() as reader:
            ticket = await reader.get_ticket(call.ticket)
        if ticket is None:
            raise ProcedureRefused("not_found", self.ctx.say(language, "{ref} does not exist.", ref=ref))
        now = self.ctx.clock.now()
        async with self.ctx.connection() as conn:
            known = await store.get_member(conn, number)
            if known is None and await store.directory_size(conn) > 0:
                raise ProcedureRefused(
                    "unknown_member",
                    self.ctx.say(language, "There is no member {number} in the directory.",
                                 number=number),
                )
            await store.link_ticket(conn, call.ticket, number, actor=call.actor, now=now,
                                    detail=ref)
        note = self.ctx.say(self.ctx.settings.language, "member {number}", number=number)
        try:
            await self.ctx.service.apply(
                Actor.operator(call.actor), intents.ClearFlag(call.ticket, members.FLAG, note)
            )
            cleared = True
        except InvalidRequest as error:
            if error.code != "no_flag":
                raise
            cleared = False
        parts = [self.ctx.say(language, "{ref} is linked to member {number}.", ref=ref,
                              number=number)]
        if known is not None and not known.active:
            parts.append(self.ctx.say(language, "Careful: that member is inactive."))
        if cleared:
            parts.append(self.ctx.say(language, "The “not a member” flag is cleared."))
        return self._answer(" ".join(parts))

    # --- mail, digest -----------------------------------------------------------------------

    async def on_new_mail(self, new: NewMail) -> None:
        """The members-only scope (members.check_new_mail)."""
        await members.check_new_mail(
            new, self.config, self.ctx.say, self.ctx.settings.language
        )

    async def digest_lines(self, language: str) -> list[str]:
        """The pending procedures older than `pending_after`, oldest first (in the procedures
        queue's room's digest)."""
        cutoff = self.ctx.clock.now() - self.config.pending_after
        async with self.ctx.reading() as reader:
            # The total and the lines shown (one more tells whether there are more), not
            # every late procedure: a backlog would be read whole each digest.
            total = await store.count_pending_since(reader.conn, cutoff)
            late = await store.pending_since(reader.conn, cutoff, limit=DIGEST_LISTED + 1)
        if not late:
            return []
        lines = [
            self.ctx.say(
                language,
                "⏳ Procedures pending for more than {age}: {count}",
                age=duration_text(self.config.pending_after),
                count=max(total, len(late)),
            )
        ]
        lines += [f"• {self._line(procedure, language)}" for procedure in late[:DIGEST_LISTED]]
        if len(late) > DIGEST_LISTED:
            lines.append(self.ctx.say(language, "… and more: the web page lists them all."))
        return lines

    # --- command line -----------------------------------------------------------------------

    def add_cli(self, parser: argparse.ArgumentParser) -> None:
        """`exobot members import FILE.csv [--dry-run]`."""
        # A positional choice, not a nested subparser, so `-c CONFIG` may come anywhere.
        parser.add_argument(
            "command",
            choices=["import"],
            help="import: load or refresh the member directory from the management tool's CSV",
        )
        parser.add_argument("file", help="the CSV export (columns as plugins.procedures.members_csv says)")
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would change, change nothing"
        )

    async def run_cli(self, args: argparse.Namespace, ctx: PluginContext) -> int:
        """Run the import: bad rows are listed with their line and nothing is imported; else
        the summary of what changed (or would change, with --dry-run)."""
        self.ctx = ctx
        self.config = ctx.config  # type: ignore[assignment]
        language = ctx.settings.language

        def _t(msgid: str, **params: object) -> str:
            return ctx.say(language, msgid, **params)

        try:
            data = Path(args.file).read_bytes()
        except OSError as error:
            print(_t("Cannot read {file}: {error}", file=args.file, error=error.strerror),
                  file=sys.stderr)
            return 2
        rows, problems = members.read_members_csv(data, self.config.members_csv, self.config)
        if problems:
            for problem in problems:
                text = _t(members.ROW_PROBLEMS[problem.code], **problem.params)
                print(_t("line {line}: {problem}", line=problem.line, problem=text),
                      file=sys.stderr)
            print(_t("Nothing was imported: correct the file and import it again."),
                  file=sys.stderr)
            return 1
        actor = f"cli:{_user()}"

        class _DryRun(Exception):
            pass

        summary = None
        try:
            async with ctx.connection() as conn:
                summary = await store.import_members(conn, rows, actor=actor, now=ctx.clock.now())
                if args.dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        assert summary is not None
        head = (
            _t("Dry run: nothing was changed. The import would give:")
            if args.dry_run
            else _t("Member directory imported from {file}:", file=args.file)
        )
        print("\n".join([head, *members.summary_lines(summary, _t)]))
        return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
