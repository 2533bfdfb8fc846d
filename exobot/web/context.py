"""What the web server needs from the rest of exobot, gathered in one object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from ipaddress import IPv4Network, IPv6Network

from exobot.core.actions import ActionRegistry, default_registry
from exobot.core.people import IdOnly, People
from exobot.core.service import TicketService
from exobot.db.repository import SqlRepository


@dataclass(frozen=True)
class WebSettings:
    """The web's share of the configuration."""

    root: str  # base URL without the trailing slash
    secure: bool  # served over https: Secure cookies, HSTS
    prefix: str = "suport"
    queues: tuple[str, ...] = ("suport",)
    default_queue: str = "suport"
    language: str = "ca"
    timezone: tzinfo = UTC
    session_ttl: timedelta = timedelta(hours=12)
    login_link_ttl: timedelta = timedelta(minutes=10)
    support_address: str = ""
    # The homeserver's name (from the bot's id): `anna` logs in as `@anna:<server_name>`.
    server_name: str = ""
    # Proxies whose X-Forwarded-For names the client (for the login limiter): networks.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    # False only in tests that must see what a page would do without its CSP.
    csp: bool = True


def _nobody(user_id: str) -> bool:
    return False


async def no_matrix(user: str, password: str) -> str | None:
    """The password check when exobot has no Matrix section: nobody can log in."""
    return None


def _no_operators() -> list[tuple[str, str]]:
    return []


async def _no_retry(inbound_id: int) -> str:
    raise RuntimeError("mail processing is not available here")


@dataclass
class WebContext:
    """The parts the pages and the API work with.

    `is_operator(user_id)` is the same rule as chat; `check_password(user, password)` asks the
    homeserver and returns the canonical Matrix id or None; `retry_mail(id)` processes a
    quarantined mail again and returns its new state; `actions` is the action registry;
    `people` names Matrix ids; `operators()` lists who may own tickets.
    """

    settings: WebSettings
    repository: SqlRepository
    service: TicketService
    is_operator: Callable[[str], bool] = _nobody
    check_password: Callable[[str, str], Awaitable[str | None]] = no_matrix
    retry_mail: Callable[[int], Awaitable[str]] = _no_retry
    # The time sessions, links and ages are measured by; None: the service's clock.
    now: Callable[[], datetime] | None = None
    # The actions forms and API routes offer (the exobot's own registry, plugins' included).
    actions: ActionRegistry = field(default_factory=default_registry)
    # The plugins' panels of a ticket page: `await panels(ticket, language)` → [Panel].
    panels: Callable[..., Awaitable[list]] | None = None
    # People's display names (the Matrix rooms'); without Matrix, ids as they are.
    people: People = field(default_factory=IdOnly)
    # The operators a ticket may be given to, as (Matrix id, display name); empty: the
    # give field is a free-text Matrix id.
    operators: Callable[[], list[tuple[str, str]]] = _no_operators

    def __post_init__(self) -> None:
        if self.now is None:
            self.now = self.service.clock.now

    @property
    def has_matrix(self) -> bool:
        """Logging in needs the Matrix identity: without a homeserver nobody gets in."""
        return self.check_password is not no_matrix
