"""The operators' pages, in process against a real SQLite database built by the migrations.

Each test logs in by inserting a session and sends the requests a browser would (forms with
the CSRF token and a nonce), then checks what the service wrote, not only the HTML.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from exobot.core.intents import Comment, MailClass, Move, ReceiveMail, Reply, SetStatus, Take
from exobot.core.model import Actor, AttachmentInfo, EntryKind, IncomingMail, Status
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import inbound
from exobot.db import web as records
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.web import queries
from exobot.web.app import create_app
from exobot.web.auth import SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings
from exobot.web.downloads import content_disposition
from exobot.web.templating import LANGUAGE_COOKIE

VOL = "@vol:example.org"
OTHER = "@altra:example.org"
MEMBER = "marta@example.net"
OWN = "suport@example.org"
QUEUES = ("suport", "tresoreria")


# ----------------------------------------------------------------------------- fixtures


class Retrier:
    """Stands in for the mail processor: records the ids and marks the mail done."""

    def __init__(self) -> None:
        self.repo: SqlRepository | None = None
        self.calls: list[int] = []

    async def __call__(self, inbound_id: int) -> str:
        self.calls.append(inbound_id)
        assert self.repo is not None
        async with self.repo.connection() as conn:
            await inbound.mark_inbound(conn, inbound_id, "done")
        return "done"


@pytest.fixture
def service(repo) -> TicketService:
    settings = ServiceSettings(
        prefix="suport", default_queue="suport", queues=frozenset(QUEUES), own_address=OWN
    )
    return TicketService(repo, MessageIds("secret" * 4, "example.org"), settings)


@pytest.fixture
def retrier(repo) -> Retrier:
    retrier = Retrier()
    retrier.repo = repo
    return retrier


@pytest.fixture
def ctx(repo, service, retrier) -> WebContext:
    settings = WebSettings(
        root="http://test", secure=False, prefix="suport", queues=QUEUES, default_queue="suport"
    )
    return WebContext(
        settings, repo, service, is_operator=lambda user: user == VOL, retry_mail=retrier
    )


@pytest.fixture
async def anonymous(ctx):
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


class Browser:
    """A logged-in client and the CSRF token its session's forms carry."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def get(self, path: str, **kwargs) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(self, path: str, data: dict | None = None, *, csrf: bool = True):
        fields = dict(data or {})
        if csrf:
            fields.setdefault("csrf", self.csrf)
        return await self.client.post(path, data=fields)

    async def act(self, number: int, action: str, **fields: str) -> httpx.Response:
        """Submit an action's form as the ticket page renders it (with its own nonce)."""
        page = await self.get(f"/tickets/{number}")
        nonce = form_nonce(page.text, f"/tickets/{number}/{action}") or uuid.uuid4().hex
        return await self.post(f"/tickets/{number}/{action}", {"nonce": nonce, **fields})


@pytest.fixture
async def browser(ctx, repo):
    async with repo.connection() as conn:
        token, session = await records.create_session(
            conn, VOL, timedelta(hours=1), datetime.now(UTC)
        )
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", cookies={SESSION_COOKIE: token}
    ) as client:
        yield Browser(client, session.csrf)


# ----------------------------------------------------------------------------- helpers


def mail(subject: str = "No em funciona el correu", body: str = "Hola,\nno puc entrar.", **kw):
    values = {
        "message_id": f"<{uuid.uuid4().hex}@member.example.net>",
        "sender": MEMBER,
        "sender_name": "Marta",
        "requestor": MEMBER,
        "subject": subject,
        "body": body,
    }
    return IncomingMail(**(values | kw))


async def receive(service, ticket: int | None = None, kind=MailClass.MEMBER, **kw) -> int:
    """A member's mail: opens a ticket, or joins `ticket` classified as `kind`."""
    message = mail(**kw)
    outcome = await service.apply(
        Actor.member(message.sender), ReceiveMail(message, kind, ticket=ticket)
    )
    return outcome.ticket


async def ticket_row(repo, number: int):
    return await repo.get_ticket(number)


async def kinds(repo, number: int) -> list[EntryKind]:
    return [entry.kind for entry in await repo.history(number)]


def form_nonce(page: str, action: str) -> str | None:
    """The nonce of the form posting to `action` on a rendered page."""
    match = re.search(
        rf'<form[^>]*action="{re.escape(action)}".*?name="nonce" value="([^"]+)"', page, re.S
    )
    return match.group(1) if match else None


def alert(page: str) -> str:
    """The text of the page's role="alert" box."""
    match = re.search(r'<p class="alert" role="alert"[^>]*>(.*?)</p>', page, re.S)
    assert match, "no alert on the page"
    return html.unescape(match.group(1)).strip()


def redirect_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text[:500]
    return response.headers["location"]


# ----------------------------------------------------------------------------- login


@pytest.mark.parametrize("path", ["/", "/tickets", "/tickets/1", "/tickets/new", "/quarantine"])
async def test_anonymous_readers_are_sent_to_login(anonymous, path):
    response = await anonymous.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


async def test_an_anonymous_form_changes_nothing(anonymous, service, repo):
    number = await receive(service)
    response = await anonymous.post(f"/tickets/{number}/take", data={"nonce": "x" * 20})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert (await ticket_row(repo, number)).owner is None


async def test_a_session_of_someone_no_longer_operator_is_refused(ctx, repo, anonymous):
    async with repo.connection() as conn:
        token, _ = await records.create_session(conn, OTHER, timedelta(hours=1), datetime.now(UTC))
    anonymous.cookies.set(SESSION_COOKIE, token)
    response = await anonymous.get("/")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


# ----------------------------------------------------------------------------- dashboard


async def test_the_dashboard_shouts_the_new_count(browser, service):
    first = await receive(service, subject="Primer")
    await receive(service, subject="Segon")
    page = await browser.get("/")
    assert page.status_code == 200
    match = re.search(
        r'<p class="new-count alarm">\s*<a href="([^"]+)">\s*<span class="number">'
        r"(\d+)</span>",
        page.text,
    )
    assert match, page.text
    assert match.group(2) == "2"
    link = parse_qs(urlsplit(html.unescape(match.group(1))).query)
    assert link["status"] == ["new"]
    assert "<h1>Tauler</h1>" in page.text
    # The oldest waiting ticket is listed with its age.
    assert f'href="/tickets/{first}"' in page.text
    assert "<time datetime=" in page.text


async def test_the_dashboard_is_calm_at_zero_and_counts_per_queue_and_status(browser, service):
    number = await receive(service)
    await service.apply(Actor.operator(VOL), Take(number))
    page = await browser.get("/")
    assert 'class="new-count calm"' in page.text
    assert 'class="new-count alarm"' not in page.text
    # The cell of queue suport × open links to that filtered list and says 1.
    cell = re.search(
        r'<a href="(/tickets\?queue=suport&amp;status=open)"\s+aria-label="[^"]+">'
        r"(\d+)</a>",
        page.text,
    )
    assert cell and cell.group(2) == "1"


async def test_the_dashboard_lists_the_stalled_pile(browser, service):
    number = await receive(service, subject="Aturat de fa dies")
    await service.apply(Actor.operator(VOL), SetStatus(number, Status.STALLED))
    page = await browser.get("/")
    assert "Aturats: 1" in page.text
    assert "Aturat de fa dies" in page.text


# ----------------------------------------------------------------------------- list


async def test_the_list_filters_searches_and_sorts(browser, service):
    a = await receive(service, subject="Factura duplicada")
    b = await receive(service, subject="No arriba el correu")
    c = await receive(service, subject="Canvi de quota")
    await service.apply(Actor.operator(VOL), Move(c, "tresoreria"))
    await service.apply(Actor.operator(VOL), Take(b))
    await service.apply(Actor.operator(VOL), SetStatus(a, Status.RESOLVED))

    def refs(page: httpx.Response) -> list[int]:
        return [
            int(n) for n in re.findall(r'<th scope="row"[^>]*><a href="/tickets/(\d+)"', page.text)
        ]

    everything = await browser.get("/tickets")
    assert refs(everything) == [c, b, a]  # newest first, every status by default
    assert "3 tickets" in everything.text
    assert refs(await browser.get("/tickets?order=oldest")) == [a, b, c]
    assert refs(await browser.get("/tickets?status=new")) == [c]
    assert refs(await browser.get("/tickets?status=new&status=open")) == [c, b]
    assert refs(await browser.get("/tickets?queue=tresoreria")) == [c]
    assert refs(await browser.get("/tickets?owner=mine")) == [b]
    assert refs(await browser.get("/tickets?owner=none")) == [c, a]
    assert refs(await browser.get("/tickets?q=factura")) == [a]
    nothing = await browser.get("/tickets?q=inexistent")
    assert refs(nothing) == []
    assert "Cap ticket coincideix" in nothing.text
    # The form shows the filters in force.
    page = await browser.get("/tickets?status=open&owner=mine&q=correu&order=updated")
    assert re.search(r'value="open" checked', page.text)
    assert re.search(r'<option value="mine" selected>', page.text)
    assert 'value="correu"' in page.text
    assert '<option value="updated" selected>' in page.text


async def test_the_list_pages_keep_the_filters(browser, service):
    numbers = [await receive(service, subject=f"Consulta {i}") for i in range(5)]
    first = await browser.get("/tickets?status=new&q=consulta&per_page=2&order=oldest")
    shown = re.findall(r'<th scope="row"[^>]*><a href="/tickets/(\d+)"', first.text)
    assert [int(n) for n in shown] == numbers[:2]
    assert "Pàgina 1 de 3" in first.text
    next_link = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert next_link
    query = parse_qs(urlsplit(html.unescape(next_link.group(1))).query)
    assert query == {
        "status": ["new"], "q": ["consulta"], "order": ["oldest"], "per_page": ["2"], "page": ["2"]
    }  # fmt: skip
    second = await browser.get(html.unescape(next_link.group(1)))
    shown = re.findall(r'<th scope="row"[^>]*><a href="/tickets/(\d+)"', second.text)
    assert [int(n) for n in shown] == numbers[2:4]
    assert 'rel="prev"' in second.text


# ----------------------------------------------------------------------------- ticket page


async def test_the_ticket_page_shows_the_whole_history_told_apart(browser, service, repo):
    number = await receive(
        service, subject="Ajuda amb la quota", body="Primer correu\nsegona línia"
    )
    await service.apply(Actor.operator(VOL), Comment(number, "Nota per a l'equip"))
    await service.apply(Actor.operator(VOL), Reply(number, "Bon dia,\nja està fet."))
    await receive(service, number, MailClass.AUTOMATIC, body="Estic de vacances")
    await receive(
        service, number, MailClass.UNVERIFIED, sender="veina@example.net", body="Soc la veïna"
    )
    await receive(
        service,
        number,
        MailClass.BOUNCE,
        sender="mailer-daemon@example.net",
        body="User unknown",
        bounce_status="5.1.1",
        bounce_recipients=(MEMBER,),
    )
    await service.apply(Actor.operator(VOL), SetStatus(number, Status.STALLED))
    page = await browser.get(f"/tickets/{number}")
    assert page.status_code == 200
    body = page.text
    for expected in (
        "entry change kind-created",
        "entry correspondence kind-mail_in",
        "entry comment kind-comment",
        "entry correspondence kind-mail_out",
        "entry correspondence kind-automatic_in",
        "entry correspondence kind-unverified_in",
        "entry correspondence kind-bounce",
        "entry change kind-status",
    ):
        assert expected in body, expected
    # In time order, with the bodies whole (line breaks kept for white-space: pre-wrap).
    order = [
        body.index(k) for k in ("kind-created", "kind-comment", "kind-mail_out", "kind-status")
    ]
    assert order == sorted(order)
    assert '<div class="body">Primer correu\nsegona línia</div>' in body
    assert '<div class="body">Bon dia,\nja està fet.</div>' in body
    assert "Nota per a l&#39;equip" in body
    # Metadata and the accept form (there is an unverified mail).
    assert "marta@example.net" in body and "Ajuda amb la quota" in body
    assert f'action="/tickets/{number}/accept"' in body
    assert "<h1" in body and body.count("<h1") == 1


async def test_an_unknown_ticket_is_404(browser):
    page = await browser.get("/tickets/999")
    assert page.status_code == 404
    assert alert(page.text) == "No existeix el ticket suport#999."
    assert (await browser.get("/tickets/abc")).status_code == 404


async def test_a_database_outage_is_a_503_page_that_says_so(browser, monkeypatch):
    async def unreachable(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(queries, "ticket_view", unreachable)
    page = await browser.get("/tickets/1")
    assert page.status_code == 503
    assert page.headers["retry-after"] == "30"
    assert alert(page.text) == (
        "Ara mateix no es pot accedir a la base de dades del servei de suport. "
        "Torna-ho a provar d'aquí a un minut."
    )


async def test_the_page_speaks_the_chosen_language(browser, service):
    number = await receive(service)
    browser.client.cookies.set(LANGUAGE_COOKIE, "es")
    page = await browser.get(f"/tickets/{number}")
    assert "Historial" in page.text and "Responder al solicitante" in page.text
    assert '<html lang="es">' in page.text


# ----------------------------------------------------------------------------- actions


async def test_each_action_goes_through_the_service(browser, service, repo):
    number = await receive(service)
    await receive(service, number, MailClass.UNVERIFIED, sender="veina@example.net")

    response = await browser.act(number, "take")
    assert redirect_of(response) == f"/tickets/{number}?done=take#done"
    ticket = await ticket_row(repo, number)
    assert ticket.owner == VOL and ticket.status is Status.OPEN

    redirect_of(await browser.act(number, "untake"))
    assert (await ticket_row(repo, number)).owner is None

    redirect_of(await browser.act(number, "give", owner=OTHER))
    assert (await ticket_row(repo, number)).owner == OTHER

    redirect_of(await browser.act(number, "comment", text="Trucada feta.\nDemà més."))
    history = await repo.history(number)
    assert history[-1].kind is EntryKind.COMMENT and history[-1].body == "Trucada feta.\nDemà més."

    redirect_of(await browser.act(number, "reply", text="Hola Marta,\nja funciona."))
    history = await repo.history(number)
    assert history[-1].kind is EntryKind.MAIL_OUT
    assert history[-1].body == "Hola Marta,\nja funciona."
    assert history[-1].actor == VOL

    redirect_of(await browser.act(number, "title", title="Correu que no arriba"))
    assert (await ticket_row(repo, number)).title == "Correu que no arriba"

    redirect_of(await browser.act(number, "move", queue="tresoreria"))
    assert (await ticket_row(repo, number)).queue == "tresoreria"

    redirect_of(await browser.act(number, "accept"))
    assert EntryKind.ACCEPTED in await kinds(repo, number)
    assert EntryKind.UNVERIFIED_IN not in await kinds(repo, number)

    redirect_of(await browser.act(number, "status", status="resolved"))
    assert (await ticket_row(repo, number)).status is Status.RESOLVED

    done = await browser.get(f"/tickets/{number}?done=status")
    assert '<p class="notice" role="status" id="done">Estat canviat.</p>' in done.text
    # Only known actions are ever shown back, never the raw parameter.
    odd = await browser.get(f"/tickets/{number}?done=%3Cb%3Ehola")
    assert 'id="done"' not in odd.text and "<b>hola" not in odd.text


async def test_a_form_sent_twice_acts_once(browser, service, repo):
    number = await receive(service)
    page = await browser.get(f"/tickets/{number}")
    nonce = form_nonce(page.text, f"/tickets/{number}/comment")
    assert nonce
    # Each form has its own nonce, so another action from the same page still acts.
    assert nonce != form_nonce(page.text, f"/tickets/{number}/reply")
    for _ in range(2):
        response = await browser.post(
            f"/tickets/{number}/comment", {"nonce": nonce, "text": "Només una vegada"}
        )
        assert redirect_of(response).startswith(f"/tickets/{number}")
    comments = [e for e in await repo.history(number) if e.kind is EntryKind.COMMENT]
    assert [c.body for c in comments] == ["Només una vegada"]


@pytest.mark.parametrize("csrf", [None, "", "not-the-token"])
async def test_a_form_without_the_csrf_token_is_refused(browser, service, repo, csrf):
    number = await receive(service)
    before = await kinds(repo, number)
    data = {"nonce": uuid.uuid4().hex, "text": "intrús"}
    if csrf is not None:
        data["csrf"] = csrf
    for action in ("take", "comment", "reply"):
        response = await browser.post(f"/tickets/{number}/{action}", data, csrf=False)
        assert response.status_code == 403
    new = await browser.post("/tickets/new", {"requestor": "a@b.org", "title": "x"}, csrf=False)
    assert new.status_code == 403
    assert await kinds(repo, number) == before
    assert (await ticket_row(repo, number)).owner is None
    assert await repo.count_tickets() == 1


@pytest.mark.parametrize(
    ("action", "fields", "message", "kept"),
    [
        ("reply", {"text": "   "}, "Falta el text", None),
        ("comment", {"text": ""}, "Falta el text", None),
        ("status", {"status": "perdut"}, "No conec l'estat «perdut»", None),
        ("status", {"status": "new"}, "no pot tornar a nou", None),
        ("give", {"owner": "pere"}, "«pere» no és un usuari de Matrix", 'value="pere"'),
        ("give", {"owner": ""}, "Falta a qui assignar-lo", None),
        ("move", {"queue": "inventada"}, "No hi ha cap cua «inventada»", None),
        ("title", {"title": "  "}, "Falta el títol nou", None),
        ("accept", {}, "no té cap correu de remitent no verificat", None),
        ("untake", {}, "ja no té responsable", None),
        ("fly", {}, "No conec l'acció «fly»", None),
    ],
)
async def test_bad_input_is_refused_with_the_message(
    browser, service, repo, action, fields, message, kept
):
    number = await receive(service)
    before = await kinds(repo, number)
    response = await browser.post(
        f"/tickets/{number}/{action}", {"nonce": uuid.uuid4().hex, **fields}
    )
    assert response.status_code == 400
    assert message in alert(response.text)
    assert "!" not in alert(response.text)  # the web's wording names no chat command
    if kept:
        assert kept in response.text
    assert await kinds(repo, number) == before


async def test_a_refused_form_keeps_what_was_typed(browser, service):
    number = await receive(service)
    # A reply of blank lines is refused, and comes back as typed in its own form.
    response = await browser.post(
        f"/tickets/{number}/reply", {"nonce": uuid.uuid4().hex, "text": "\n \n"}
    )
    assert response.status_code == 400
    assert re.search(r'<textarea id="reply-text"[^>]*>\n \n</textarea>', response.text)
    assert 'role="alert" id="error-reply"' in response.text
    # The refused field is marked invalid and described by the message.
    response = await browser.post(
        f"/tickets/{number}/title", {"nonce": uuid.uuid4().hex, "title": "   "}
    )
    assert re.search(r'id="title-field"[^>]*aria-invalid="true"', response.text)
    assert 'aria-describedby="error-title"' in response.text


async def test_typed_text_comes_back_escaped(browser, service):
    number = await receive(service)
    typed = "<b>hola</b> & adéu"
    response = await browser.post(
        f"/tickets/{number}/give", {"nonce": uuid.uuid4().hex, "owner": typed}
    )
    assert response.status_code == 400
    assert 'value="&lt;b&gt;hola&lt;/b&gt; &amp; adéu"' in response.text
    assert "<b>hola</b>" not in response.text


async def test_an_action_on_an_unknown_ticket_is_404(browser):
    response = await browser.post("/tickets/999/reply", {"nonce": uuid.uuid4().hex, "text": "x"})
    assert response.status_code == 404
    assert alert(response.text) == "No existeix el ticket suport#999."


# ----------------------------------------------------------------------------- new ticket


async def test_a_ticket_opened_on_a_members_behalf(browser, repo):
    form = await browser.get("/tickets/new")
    assert form.status_code == 200
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text).group(1)
    fields = {
        "nonce": nonce,
        "requestor": "Pere@Example.net",
        "title": "Trucada: no pot pagar",
        "text": "Ha trucat a les 10.",
        "queue": "tresoreria",
    }
    response = await browser.post("/tickets/new", fields)
    location = redirect_of(response)
    number = int(location.rsplit("/", 1)[1])
    ticket = await ticket_row(repo, number)
    assert ticket.requestor == "pere@example.net"
    assert ticket.queue == "tresoreria" and ticket.title == "Trucada: no pot pagar"
    history = await repo.history(number)
    assert [e.kind for e in history] == [EntryKind.CREATED, EntryKind.COMMENT]
    assert history[1].body == "Ha trucat a les 10."
    # The same form again opens nothing more and shows the ticket the first one opened.
    assert redirect_of(await browser.post("/tickets/new", fields)) == location
    assert await repo.count_tickets() == 1


async def test_a_bad_new_ticket_is_refused_and_kept(browser, repo):
    response = await browser.post(
        "/tickets/new",
        {"nonce": uuid.uuid4().hex, "requestor": "no és adreça", "title": "Hola", "text": "nota"},
    )
    assert response.status_code == 400
    assert "no és una adreça de correu utilitzable" in alert(response.text)
    assert 'value="no és adreça"' in response.text and ">nota</textarea>" in response.text
    missing = await browser.post("/tickets/new", {"requestor": "a@b.org", "title": ""})
    assert missing.status_code == 400
    assert "Falta el títol" in alert(missing.text)
    assert await repo.count_tickets() == 0


# ----------------------------------------------------------------------------- attachments


async def test_an_attachment_is_downloaded_never_shown(browser, service, repo):
    files = (
        AttachmentInfo("factura març.pdf", "application/pdf", b"%PDF-1.4 data"),
        AttachmentInfo('<img src=x onerror=alert(1)>"a.html', "text/html", b"<script>x</script>"),
    )
    number = await receive(service, attachments=files)
    other = await receive(service, subject="Un altre")
    async with repo.reading() as view:
        metas = await view.attachments(number)
    page = await browser.get(f"/tickets/{number}")
    assert f'href="/tickets/{number}/attachments/{metas[0].id}"' in page.text
    assert "factura març.pdf" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text

    response = await browser.get(f"/tickets/{number}/attachments/{metas[0].id}")
    assert response.status_code == 200
    assert response.content == b"%PDF-1.4 data"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''factura%20mar%C3%A7.pdf" in disposition
    assert 'filename="factura marc.pdf"' in disposition

    hostile = await browser.get(f"/tickets/{number}/attachments/{metas[1].id}")
    assert hostile.headers["content-type"] == "application/octet-stream"
    assert hostile.headers["content-disposition"].startswith("attachment;")

    assert (await browser.get(f"/tickets/{other}/attachments/{metas[0].id}")).status_code == 404
    assert (await browser.get(f"/tickets/{number}/attachments/99999")).status_code == 404


def test_content_disposition_never_breaks_the_header():
    value = content_disposition('../"evil"\r\nX-Injected: 1;.txt')
    assert "\r" not in value and "\n" not in value
    fallback = re.search(r'filename="([^"]*)"', value).group(1)
    assert re.fullmatch(r"[A-Za-z0-9._ ()+-]+", fallback)
    assert "/" not in value.split("filename*=")[1]
    assert (
        content_disposition("")
        == "attachment; filename=\"attachment\"; filename*=UTF-8''attachment"
    )


# ----------------------------------------------------------------------------- quarantine


async def quarantined(repo, error: str = "not a mail: bad header", uid: int = 1) -> int:
    async with repo.connection() as conn:
        await inbound.store_many(conn, "INBOX", 7, [(uid, b"Subject: x\r\n\r\nbroken")])
        stored = await inbound.list_inbound(conn, None)
        inbound_id = next(item.id for item in stored if item.uid == uid)
        await inbound.mark_inbound(
            conn, inbound_id, inbound.QUARANTINED, error=error, sender="<b>x</b>@example.net"
        )
    return inbound_id


async def state_of(repo, inbound_id: int) -> str:
    async with repo.connection() as conn:
        return (await inbound.get_inbound(conn, inbound_id)).state


async def test_the_quarantine_lists_retries_and_discards(browser, repo, retrier):
    first = await quarantined(repo, uid=1)
    second = await quarantined(repo, error="<script>alert(1)</script>", uid=2)
    page = await browser.get("/quarantine")
    assert page.status_code == 200
    assert f'action="/quarantine/{first}/retry"' in page.text
    assert f'action="/quarantine/{second}/discard"' in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;x&lt;/b&gt;@example.net" in page.text
    assert "en quarantena: 2" in page.text  # the stored-mail counts

    response = await browser.post(f"/quarantine/{first}/retry")
    location = redirect_of(response)
    assert parse_qs(urlsplit(location).query) == {
        "done": ["retried"], "id": [str(first)], "state": ["done"]
    }  # fmt: skip
    assert retrier.calls == [first]
    notice = await browser.get(location)
    assert f"El correu {first} s&#39;ha tornat a processar: processat." in notice.text

    response = await browser.post(f"/quarantine/{second}/discard")
    assert redirect_of(response) == f"/quarantine?done=discarded&id={second}"
    assert await state_of(repo, second) == "discarded"
    async with repo.connection() as conn:
        assert (await inbound.get_inbound(conn, second)).error == "<script>alert(1)</script>"

    # Neither is quarantined any more: a second click says so and does nothing.
    again = await browser.post(f"/quarantine/{second}/retry")
    assert redirect_of(again) == f"/quarantine?done=missing&id={second}"
    assert retrier.calls == [first]
    empty = await browser.get("/quarantine")
    assert "La quarantena és buida." in empty.text


async def test_quarantine_forms_need_the_csrf_token(browser, repo, retrier):
    inbound_id = await quarantined(repo)
    assert (await browser.post(f"/quarantine/{inbound_id}/discard", csrf=False)).status_code == 403
    assert (await browser.post(f"/quarantine/{inbound_id}/retry", csrf=False)).status_code == 403
    assert await state_of(repo, inbound_id) == inbound.QUARANTINED
    assert retrier.calls == []


async def test_the_quarantine_notice_never_echoes_its_parameters(browser):
    page = await browser.get("/quarantine?done=%3Cscript%3E&id=1")
    assert "<script>" not in page.text and 'class="notice"' not in page.text
    page = await browser.get("/quarantine?done=retried&id=3&state=%3Cb%3Eboom")
    assert "boom" not in page.text
    assert "El correu 3 s&#39;ha tornat a processar: processat." in page.text


# ----------------------------------------------------------------------------- hostile mail


async def test_hostile_mail_is_shown_escaped(browser, service, repo):
    number = await receive(
        service,
        subject="<script>alert(1)</script>",
        body='Mira: <img src=x onerror=alert(1)> "ok"',
        sender_name="<i>Marta</i>",
    )
    await browser.act(number, "comment", text="<svg onload=alert(2)>")
    pages = [
        await browser.get(f"/tickets/{number}"),
        await browser.get("/tickets"),
        await browser.get("/"),
    ]
    for page in pages:
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    ticket_page = pages[0].text
    assert "<img src=x" not in ticket_page
    assert "&lt;img src=x onerror=alert(1)&gt; &#34;ok&#34;" in ticket_page
    assert "&lt;svg onload=alert(2)&gt;" in ticket_page
    assert "<i>Marta</i>" not in ticket_page


async def test_no_page_has_inline_script_style_or_handlers(browser, service, repo):
    number = await receive(service, attachments=(AttachmentInfo("a.txt", "text/plain", b"a"),))
    await quarantined(repo)
    for path in ("/", "/tickets", f"/tickets/{number}", "/tickets/new", "/quarantine"):
        page = (await browser.get(path)).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), path
        assert not re.search(r"\sstyle=", page), path
        assert not re.search(r"<[^>]*\son[a-z]+=", page), path
        assert "<style" not in page, path
        assert page.count("<h1") == 1, path
        # Every visible form field has a label.
        for field_id in re.findall(
            r'<(?:input|select|textarea)(?![^>]*type="hidden")[^>]*\sid="([^"]+)"', page
        ):
            assert f'<label for="{field_id}"' in page, (path, field_id)
        # Every form that acts carries the CSRF token (choosing a language changes nothing).
        for form in re.findall(r'<form method="post" action="(?!/language").*?</form>', page, re.S):
            assert 'name="csrf"' in form, (path, form[:80])


async def test_choosing_a_language_comes_back_to_the_page(browser, service):
    number = await receive(service)
    listing = await browser.get("/tickets?status=new&q=hola")
    assert 'name="next" value="/tickets?status=new&amp;q=hola"' in listing.text
    refused = await browser.post(f"/tickets/{number}/give", {"owner": "pere"})
    assert refused.status_code == 400
    assert f'name="next" value="/tickets/{number}"' in refused.text
