"""Typed configuration of exobot, read from YAML with ``EXOBOT__*`` environment overrides.

Each section is a pydantic model that forbids unknown keys. Loading never lets a pydantic
error escape: every problem is collected into one :class:`ConfigError`, one human line each,
naming the dotted key ("mail.imap.port: must be ...") and never echoing a secret.

Typical use::

    try:
        config = load_config("config.yaml")
    except ConfigError as error:
        print(error)  # one line per problem
"""

import copy
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from datetime import time, timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from exobot.core.addresses import address_problem
from exobot.core.languages import DEFAULT_LANGUAGE, LANGUAGES

__all__ = [
    "ENV_PREFIX",
    "KNOWN_PLUGINS",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "ConfigSection",
    "DatabaseConfig",
    "ImapConfig",
    "LoggingConfig",
    "MailConfig",
    "MatrixConfig",
    "OutboxConfig",
    "PrivacyConfig",
    "QueueConfig",
    "SmtpConfig",
    "TicketsConfig",
    "WebConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "validation_problems",
]

ENV_PREFIX = "EXOBOT__"

#: Names accepted under ``plugins:``. The plugin system adds the names it discovers before
#: the configuration is loaded; until then every plugin name is an error.
KNOWN_PLUGINS: set[str] = set()

# Values under these keys are never shown in an error message.
_SECRET_KEYS = frozenset({"password", "access_token", "hmac_secret"})
# A database URL may embed a password (postgresql+psycopg://user:pass@host/db).
_SECRET_PATHS = frozenset({("database", "url")})


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` holds one human line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------- value types

_DURATION_RE = re.compile(r"(\d+)([smhd])")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# The longest duration a setting takes: a date this far from now is one Python still holds
# (a ticket's alert time, a session's end, a retention cutoff), with centuries to spare.
MAX_DURATION = timedelta(days=36_500)


def parse_duration(text: str) -> timedelta:
    """Parse a duration written as a whole number and a unit: "30s", "15m", "4h" or "7d".

    Anything else ("4 hours", "1h30m", 60), or more than MAX_DURATION, raises ValueError
    with a message saying why.
    """
    match = _DURATION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number followed by s, m, h or d "
            "(e.g. 30s, 15m, 4h, 7d)"
        )
    # Compared as digits first: int() refuses thousands of them, timedelta overflows sooner.
    number, unit = match[1].lstrip("0") or "0", _DURATION_UNITS[match[2]]
    one = timedelta(**{unit: 1}).total_seconds()
    if len(number) > 12 or int(number) * one > MAX_DURATION.total_seconds():
        raise DurationTooLong()
    return timedelta(**{unit: int(number)})


class DurationTooLong(ValueError):
    """A duration over MAX_DURATION."""

    def __init__(self) -> None:
        super().__init__(f"must be at most {MAX_DURATION.days}d (100 years)")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    else:
        try:
            delta = parse_duration(value)
        except DurationTooLong:
            raise
        except ValueError:
            raise ValueError(
                "must be a duration: a whole number followed by s, m, h or d (e.g. 30s, 4h, 7d)"
            ) from None
    # Zero would turn polling loops and alert repeats into busy loops.
    if delta <= timedelta(0):
        raise ValueError("must be longer than zero")
    if delta > MAX_DURATION:
        raise DurationTooLong()
    return delta


_SIZE_RE = re.compile(r"(\d+)\s*([KMG]B)?", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_size(value: Any) -> int:
    """Parse a size in bytes: a whole number of bytes, or one with KB, MB or GB (binary units:
    1 MB = 1,048,576 bytes), e.g. 512MB, "25 MB", 1GB. Anything else raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(
                "must be a size: a whole number of bytes or one followed by KB, MB or GB "
                "(e.g. 512MB, 1GB)"
            )
        size = int(match[1]) * _SIZE_UNITS[match[2] and match[2].upper()]
    if size <= 0:
        raise ValueError("must be larger than zero")
    return size


def _port(value: Any) -> int:
    # Environment values arrive as strings; YAML gives ints. Booleans are ints in Python.
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError("must be an integer between 1 and 65535")
    return value


def _clock_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 10:30 as the base-60 number 630.
        raise ValueError(
            'must be a time "HH:MM" in quotes (unquoted, YAML reads 10:30 as a number)'
        )
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError('must be a time of day "HH:MM" between 00:00 and 23:59')
    return time(int(match[1]), int(match[2]))


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ValueError("must be an http:// or https:// URL")
    # Without the trailing slash, callers can always join with f"{base}/path".
    return value.rstrip("/")


def _split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")  # IPv6 literal: [::1]:8080
    if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError('must be "host:port", e.g. 127.0.0.1:8080')
    return host, int(port)


def _matching(pattern: str, what: str) -> AfterValidator:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _sendable_address(value: str) -> str:
    """An address every mail can be sent from: the one check our From headers pass
    (exobot.core.addresses), so that "josé@example.org" or "su,port@example.org" stop the
    start instead of every acknowledgement."""
    problem = address_problem(value)
    if problem is not None:
        raise ValueError(f"must be an address mail can be sent from: {problem.rstrip('.')}")
    return value


def _known_plugin(name: str) -> str:
    # Read at validation time so names the plugin system adds later are honoured.
    if name not in KNOWN_PLUGINS:
        known = ", ".join(sorted(KNOWN_PLUGINS)) or "none"
        raise ValueError(f"unknown plugin (known: {known})")
    return name


def _none_as_empty(value: Any) -> Any:
    # "name:" with nothing after it in YAML means "all defaults", not "null".
    return {} if value is None else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Port = Annotated[int, BeforeValidator(_port)]
Size = Annotated[int, BeforeValidator(parse_size)]


def _at_least(minimum: int, written: str) -> AfterValidator:
    def check(size: int) -> int:
        if size < minimum:
            raise ValueError(f"must be at least {written}")
        return size

    return AfterValidator(check)


ClockTime = Annotated[time, BeforeValidator(_clock_time)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Security = Literal["ssl", "starttls", "none"]
Language = Literal[LANGUAGES]  # the languages with catalogs, declared once
Slug = Annotated[str, _matching(r"[a-z0-9][a-z0-9-]*", "lowercase letters, digits and hyphens")]
MatrixUserId = Annotated[str, _matching(r"@[^:\s]+:\S+", "a Matrix user id like @name:example.org")]
MatrixRoom = Annotated[
    str, _matching(r"[#!][^:\s]+:\S+", "a Matrix room like #alias:example.org or !id:example.org")
]
EmailAddress = Annotated[
    str,
    _matching(r"[^@\s]+@[^@\s]+\.[^@\s.]+", "an email address like suport@example.org"),
    AfterValidator(_sendable_address),
]
PluginName = Annotated[str, AfterValidator(_known_plugin)]
# RFC 8601's authserv-id as mail servers write it: a host name or a similar token.
AuthservId = Annotated[
    str, _matching(r"[A-Za-z0-9][A-Za-z0-9._-]*", "a host name like mx.example.org")
]
PluginSettings = Annotated[dict[str, Any], BeforeValidator(_none_as_empty)]


# --------------------------------------------------------------------------- sections

_PLACEHOLDER_WORDS = frozenset({"...", "changeme", "change-me", "change_me"})
_PLACEHOLDER_RE = re.compile(r"<[^<>]+>")  # "<your password>"


def _is_placeholder(text: str) -> bool:
    stripped = text.strip()
    return (
        "…" in stripped
        or stripped.lower() in _PLACEHOLDER_WORDS
        or _PLACEHOLDER_RE.fullmatch(stripped) is not None
    )


def _expects_container(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_expects_container(arg) for arg in get_args(annotation))
    origin = get_origin(annotation) or annotation
    return origin in (list, dict) or (isinstance(origin, type) and issubclass(origin, BaseModel))


class ConfigSection(BaseModel):
    """Base of every configuration section.

    Unknown keys are errors, empty and placeholder strings ("…", "CHANGEME", "<password>")
    are refused, and a string given where a list or mapping is expected is read as JSON
    (that is how environment variables carry them). Plugins subclass it for their settings.
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _screen_raw_value(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            raise PydanticCustomError("empty", "must not be empty")
        if _is_placeholder(value):
            raise PydanticCustomError("placeholder", "placeholder value, set a real one")
        if info.field_name and _expects_container(cls.model_fields[info.field_name].annotation):
            try:
                return json.loads(value)
            except ValueError:
                pass  # pydantic then reports "must be a list/mapping"
        return value


class DatabaseConfig(ConfigSection):
    """Where tickets are stored: SQLite for small installs, PostgreSQL otherwise."""

    url: str = "sqlite:///var/exobot.db"

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        problem = cls.url_problem(url)
        if problem is not None:
            raise ValueError(problem)
        return url

    @staticmethod
    def url_problem(url: str) -> str | None:
        """What makes `url` no database URL exobot can use (`database.url`, and `exobot db
        copy`'s --to and --from), or None. Only the drivers exobot ships are accepted
        (sqlite3 and aiosqlite, psycopg 3): another one would pass here and fail at start
        (postgresql+asyncpg: no module named asyncpg). The URL itself is never in the
        message (it may hold a password)."""
        accepted = "must be a sqlite:/// or postgresql+psycopg:// URL"
        scheme = url.split("://", 1)[0] if "://" in url else ""
        backend, _, driver = scheme.partition("+")
        drivers = {"sqlite": ("", "pysqlite", "aiosqlite"), "postgresql": ("", "psycopg")}
        if backend not in drivers:
            return accepted
        if driver not in drivers[backend]:
            return f"{accepted} (exobot has no {driver} driver)"
        # Imported here: of the configuration, only a database URL needs SQLAlchemy.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except (ArgumentError, ValueError):  # ValueError: e.g. a port that is no number
            return f"{accepted} (this one cannot be read as a URL)"
        return None


class QueueConfig(ConfigSection):
    """One queue of tickets and the Matrix room where its volunteers work (None: no room)."""

    room: MatrixRoom | None = None

    @model_validator(mode="before")
    @classmethod
    def _allow_empty(cls, data: Any) -> Any:
        return _none_as_empty(data)


class TicketsConfig(ConfigSection):
    """Ticket numbering (``prefix#N``) and the queues tickets are sorted into."""

    prefix: Slug = "suport"
    # Declared before default_queue so its validator can see the validated queues.
    queues: dict[Slug, QueueConfig] = Field(default_factory=lambda: {"suport": QueueConfig()})
    default_queue: Slug = Field("suport", validate_default=True)
    # The number of the first ticket of a fresh installation (applied at start and by
    # `exobot migrate` while the database has no ticket); None: 1.
    first_number: int | None = Field(None, ge=1, le=2**31 - 2)
    # The names in the subject tags of a helpdesk exobot replaced: `[NAME #N]` and `[NAME#N]`
    # thread like `[prefix#N]` (Request Tracker's rtname, e.g. "eXO").
    legacy_tags: list[str] = Field(default_factory=list)

    @field_validator("legacy_tags")
    @classmethod
    def _tag_names(cls, names: list[str]) -> list[str]:
        cleaned = [" ".join(name.split()) for name in names]
        for name in cleaned:
            if not name or len(name) > 100 or any(c in name for c in "[]#"):
                raise ValueError(f"{name!r} is no tag name (1-100 characters, without [, ] or #)")
        return list(dict.fromkeys(cleaned))

    @field_validator("queues")
    @classmethod
    def _at_least_one(cls, queues: dict[str, QueueConfig]) -> dict[str, QueueConfig]:
        if not queues:
            raise ValueError("must define at least one queue")
        return queues

    @field_validator("default_queue")
    @classmethod
    def _is_a_queue(cls, name: str, info: ValidationInfo) -> str:
        queues = info.data.get("queues")  # absent when queues itself was invalid
        if queues is not None and name not in queues:
            raise ValueError(f"must be one of the queues ({', '.join(queues)})")
        return name


class MatrixConfig(ConfigSection):
    """The bot's Matrix account. Exactly one of ``password`` and ``access_token``."""

    homeserver: HttpUrl
    user_id: MatrixUserId
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_name: str = "exobot"
    store_path: Path = Path("var/matrix")
    operators: list[MatrixUserId] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_credential(self) -> "MatrixConfig":
        if (self.password is None) == (self.access_token is None):
            which = "both are set" if self.password else "neither is set"
            raise ValueError(f"set exactly one of password or access_token ({which})")
        return self


class ImapConfig(ConfigSection):
    """The mailbox members write to; read with IDLE, polled as a fallback."""

    host: str
    port: Port = 993
    security: Security = "ssl"
    username: str
    password: SecretStr
    folder: str = "INBOX"
    poll_interval: Duration = timedelta(seconds=60)
    idle_timeout: Duration = timedelta(minutes=25)


class SmtpConfig(ConfigSection):
    """The server that sends our mail. Without username/password no AUTH is attempted."""

    host: str
    port: Port = 587
    security: Security = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _auth_pair(self) -> "SmtpConfig":
        if (self.username is None) != (self.password is None):
            missing = "password" if self.password is None else "username"
            raise ValueError(f"set both username and password, or neither ({missing} is missing)")
        return self


MAX_RETRY_WAIT = timedelta(days=7)


class OutboxConfig(ConfigSection):
    """Retries of outgoing deliveries: exponential from ``retry_base`` up to ``retry_max``."""

    # A mail that keeps failing holds back its ticket's later mails until it is given up:
    # 1,000 attempts at the default retry_max (1 h) take six weeks; more is a typo.
    max_attempts: int = Field(10, ge=1, le=1000)
    retry_base: Duration = timedelta(seconds=30)
    retry_max: Duration = timedelta(hours=1)

    @field_validator("retry_base", "retry_max")
    @classmethod
    def _sensible_wait(cls, value: timedelta) -> timedelta:
        # Zero would retry in a loop; a wait of years would overflow the date of the next try
        # (the row then left due, sent again at every pass). A week is already long.
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        if value > MAX_RETRY_WAIT:
            raise ValueError(f"must be at most {MAX_RETRY_WAIT.days} days")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "OutboxConfig":
        if self.retry_max < self.retry_base:
            raise ValueError("retry_max must not be shorter than retry_base")
        return self


class MailConfig(ConfigSection):
    """The helpdesk address and how mail is received and sent."""

    address: EmailAddress
    display_name: str = "Suport eXO"
    imap: ImapConfig
    smtp: SmtpConfig
    hmac_secret: SecretStr | None = None
    ack_limit_per_day: int = Field(5, ge=0)
    # Addresses that send mail on behalf of members, naming them in Reply-To (a web form):
    # their mails are counted per member, not per this From, by the hourly limit of new
    # tickets and the daily cap of acknowledgements.
    form_senders: list[EmailAddress] = Field(default_factory=list)
    # Per language, the acknowledgement's sentence saying when a first answer can be
    # expected, replacing the default (catalog) one.
    first_answer: dict[Language, str] = Field(default_factory=dict)
    # New tickets and unverified mails one sender may cause per hour; later ones are held in
    # quarantine ("flood") until an operator lets them through.
    new_tickets_per_sender_per_hour: int = Field(10, ge=1)
    # The authserv-id of our own mail server's Authentication-Results header: its dmarc=fail
    # makes a mail unverified. None: no such header is believed (anyone can write one).
    trusted_authserv_id: AuthservId | None = None
    templates_dir: Path | None = None
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    # Each mail is parsed in a worker process within these bounds; a mail over them is
    # quarantined, never retried automatically.
    parse_timeout: Duration = timedelta(seconds=10)
    parse_memory: Annotated[Size, _at_least(128 * 1024**2, "128MB")] = 512 * 1024**2
    parse_workers: int = Field(2, ge=1, le=32)
    # The workers start with the first mail and stop after this many seconds without one
    # (0: they run until exobot stops).
    parse_idle_seconds: float = Field(60.0, ge=0)
    # On PostgreSQL a burst of outgoing mail is sent from a second process, started for the
    # burst and gone when it is over (exobot.mail.send_helper); false: all from this one.
    send_helper: bool = True
    # A bigger mail is not fetched: its header is quarantined and its sender told once a day.
    max_size: Annotated[Size, _at_least(64 * 1024, "64KB")] = 25 * 1024**2

    @field_validator("hmac_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters long")
        return secret

    @field_validator("templates_dir")
    @classmethod
    def _is_directory(cls, path: Path | None) -> Path | None:
        # Checked now: a mistyped directory would otherwise silently fall back to defaults.
        if path is not None and not path.is_dir():
            raise ValueError("must be an existing directory")
        return path


class AlertsConfig(ConfigSection):
    """When volunteers are reminded of waiting tickets, and the daily digest."""

    new_after: Duration = timedelta(hours=4)
    repeat_every: Duration = timedelta(hours=4)
    stalled_every: Duration = timedelta(days=7)
    digest_at: ClockTime | None = time(9, 0)  # null: no daily digest
    timezone: str = "Europe/Madrid"
    # How often the sweep looks for due alerts (tests shorten it).
    sweep_every: Duration = timedelta(seconds=60)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be a time zone name like Europe/Madrid") from None
        return name

    @property
    def tzinfo(self) -> ZoneInfo:
        """The time zone as a ``ZoneInfo`` (``digest_at`` is local time in it)."""
        return ZoneInfo(self.timezone)


class ListeningSection(ConfigSection):
    """A section with a ``listen`` address (``host:port``), validated, with its parts."""

    listen: str

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _split_listen(value)
        return value

    @property
    def host(self) -> str:
        """Host part of ``listen`` (IPv6 without brackets)."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return _split_listen(self.listen)[1]


class WebConfig(ListeningSection):
    """The web server; ``base_url`` is how links in mail and Matrix point to it."""

    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    base_url: HttpUrl | None = None  # always set after validation, from listen if absent
    session_ttl: Duration = timedelta(hours=12)  # a browser session, from its login
    login_link_ttl: Duration = timedelta(minutes=10)  # a link sent by `!login`
    # The TLS proxies in front (IPs or CIDRs): only a request from one of them has its
    # X-Forwarded-For believed, for the login limiter's client address.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None
        return values

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``trusted_proxies`` as networks."""
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.trusted_proxies)

    @model_validator(mode="after")
    def _default_base_url(self) -> "WebConfig":
        if self.base_url is None:
            self.base_url = f"http://{self.listen}"
        return self

    @property
    def secure(self) -> bool:
        """Served over https (cookies then get the Secure flag)."""
        return str(self.base_url).startswith("https://")

    @property
    def root(self) -> str:
        """``base_url`` without its trailing slash, for building links."""
        return str(self.base_url).rstrip("/")


class MetricsConfig(ListeningSection):
    """Prometheus metrics, served on an address of their own (the section's absence: none)."""

    listen: str = "127.0.0.1:9108"


class PrivacyConfig(ConfigSection):
    """Data protection: masking of sensitive values in mail and how long texts are kept."""

    mask: bool = True  # detect and mask sensitive values (IBAN, DNI/NIE, cards, passwords)
    # Per-language text replacing the default (catalog) text of the advice mail.
    advice: dict[Language, str] = Field(default_factory=dict)
    # Closed (resolved/rejected) tickets: their texts are purged this long after closing.
    retention: Duration = timedelta(days=730)
    # Raw intake mails are dropped this long after processing (the dedupe record stays).
    raw_mail_retention: Duration = timedelta(days=30)
    # Processed mail is expunged from the IMAP folder this long after arrival; None: never.
    mailbox_retention: Duration | None = None

    @field_validator("retention", "raw_mail_retention", "mailbox_retention")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        # A zero retention would purge what was just stored, before anyone read it.
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class LoggingConfig(ConfigSection):
    """Logging threshold of the whole process."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Config(ConfigSection):
    """The whole configuration. ``matrix`` is None when the section is absent."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    tickets: TicketsConfig = Field(default_factory=TicketsConfig)
    matrix: MatrixConfig | None = None
    mail: MailConfig
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    metrics: MetricsConfig | None = None  # off unless the section is there
    language: Language = DEFAULT_LANGUAGE
    plugins: dict[PluginName, PluginSettings] = Field(default_factory=dict)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML would silently keep the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *defaults" may legitimately be overridden by explicit keys
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable key: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_KIND_NAMES = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file at ``path``, apply ``EXOBOT__*`` overrides and validate.

    ``env`` defaults to ``os.environ``. Raises :class:`ConfigError` listing every problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not valid UTF-8 text"]) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot read file ({error.strerror})"]) from None

    try:
        data = yaml.load(text, Loader=_StrictLoader)  # _StrictLoader is a SafeLoader
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}: invalid YAML{where}: {error.problem}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: invalid YAML: {error}"]) from None

    if data is None:
        raise ConfigError([f"{path}: the file is empty; it must be a mapping of sections"])
    if not isinstance(data, dict):
        kind = _KIND_NAMES.get(type(data), type(data).__name__)
        raise ConfigError([f"{path}: the top level must be a mapping of sections, not {kind}"])
    return parse_config(data, env)


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed configuration data, after applying ``EXOBOT__*`` overrides.

    ``data`` is not modified. ``env`` defaults to ``os.environ``. Raises
    :class:`ConfigError` listing every problem.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(["the top level must be a mapping of sections"])
    tree = {}
    for key, value in data.items():
        if value is not None:
            tree[key] = copy.deepcopy(value)
        elif key not in Config.model_fields:
            tree[key] = value  # reported as an unknown key
        elif _expects_container(Config.model_fields[key].annotation):
            # A section written with nothing under it ("alerts:", "metrics:") is there, with
            # its defaults: the same as "metrics: {}" (so metrics are served, and a bare
            # "matrix:" names its missing keys rather than leaving Matrix silently off).
            tree[key] = {}
        # else a setting left empty ("language:"): its default.
    sources, problems, made = _apply_env(tree, os.environ if env is None else env)
    problems += _plugins_made_by_env(tree, made, sources)
    installed = _installed_plugins()
    KNOWN_PLUGINS.update(installed)
    try:
        config = Config.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(
            problems + validation_problems(error, env_sources=sources, env_made=made)
        ) from None
    problems += _plugin_problems(config, installed, sources)
    if problems:
        raise ConfigError(problems)
    return config


def _installed_plugins() -> dict[str, type[ConfigSection] | str]:
    """Each installed plugin's settings model, or why it cannot be loaded, by name."""
    from exobot.plugins.discovery import installed  # the plugins import this module

    return {
        name: entry.cls.config_model if entry.cls is not None else str(entry.error)
        for name, entry in installed().items()
    }


def _plugin_problems(
    config: Config,
    installed: Mapping[str, type[ConfigSection] | str],
    sources: Mapping[tuple[str, ...], str],
) -> list[str]:
    """Each enabled plugin's settings checked by its own model (`plugins.NAME.key: …`). The
    validated core configuration is the validation's context (`info.context["core"]`), so a
    plugin's model can check a key against it (a queue that exists) here, in check-config,
    rather than when the plugin starts (a traceback, the plugin disabled)."""
    problems = []
    for name, settings in config.plugins.items():
        model = installed.get(name)
        if model is None:
            continue  # a name made known by hand (tests): nothing to check it against
        if isinstance(model, str):
            problems.append(f"plugins.{name}: the plugin cannot be loaded ({model})")
            continue
        try:
            model.model_validate(settings, context={"core": config})
        except ValidationError as error:
            problems += validation_problems(error, ("plugins", name), sources)
    return problems


def _plugins_made_by_env(
    tree: dict[str, Any], made: set[tuple[str, ...]], sources: Mapping[tuple[str, ...], str]
) -> list[str]:
    """A variable that sets a plugin's setting enables no plugin: refused when the file does
    not enable the plugin (EXOBOT__PLUGINS='{"NAME": {…}}' does: it gives the whole list)."""
    problems = []
    for section in sorted(made):
        if len(section) != 2 or section[0] != "plugins":
            continue
        for path in sorted(p for p in sources if p[:2] == section):
            problems.append(
                f"{sources[path]} sets {_dotted(section)}, which the configuration file "
                "does not enable"
            )
        del tree["plugins"][section[1]]  # not checked as enabled either
    return problems


def _apply_env(
    tree: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[tuple[str, ...], str], list[str], set[tuple[str, ...]]]:
    """Set ``EXOBOT__A__B=v`` as ``tree[a][b] = v``; return which key came from which variable,
    the problems, and the sections the variables made (absent from the file)."""
    sources: dict[tuple[str, ...], str] = {}
    problems: list[str] = []
    made: set[tuple[str, ...]] = set()
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            problems.append(f"{name}: malformed variable name, expected EXOBOT__SECTION__KEY")
            continue
        node = tree
        for depth, key in enumerate(path[:-1]):
            if node.get(key) is None:
                if key not in node:  # written with nothing under it ("connectivity:") is there
                    made.add(path[: depth + 1])
                node[key] = {}
            if not isinstance(node[key], dict):
                problems.append(
                    f"{_dotted(path[: depth + 1])} (from {name}): is not a mapping, "
                    f"cannot set {path[depth + 1]!r} inside it"
                )
                break
            node = node[key]
        else:
            node[path[-1]] = env[name]
            sources[path] = name
    return sources, problems, made


# --------------------------------------------------------------------------- error lines

# Error kinds whose offending input is not worth echoing (or may be a secret).
_NO_ECHO_KINDS = frozenset({"missing", "extra_forbidden", "placeholder", "empty"})
_CONTAINER_KINDS = frozenset({"list_type", "dict_type", "model_type", "model_attributes_type"})
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "path_type": "must be a path",
}


def validation_problems(
    error: ValidationError,
    prefix: tuple[str, ...] = (),
    env_sources: Mapping[tuple[str, ...], str] | None = None,
    env_made: set[tuple[str, ...]] | None = None,
) -> list[str]:
    """Turn a pydantic ValidationError into "key.path: what is wrong" lines.

    ``prefix`` is prepended to every key (a plugin validating its own settings passes
    ``("plugins", name)``); ``env_sources`` maps key paths to the variable that set them;
    ``env_made`` holds the sections only variables made (the file has none), named with the
    variables behind them in a problem inside them.
    """
    problems = []
    for detail in error.errors(include_url=False):
        loc = prefix + tuple(detail["loc"])
        about_key = bool(loc) and loc[-1] == "[key]"  # the mapping key itself is wrong
        if about_key:
            loc = loc[:-1]
        label = _dotted(loc) or "(top level)"
        source = _env_source(loc, env_sources or {})
        if source is None and detail["type"] == "extra_forbidden":
            # An unknown key or section a variable made up (EXOBOT__MAIL__IMAPP__HOST makes
            # mail.imapp): the variables under it, since the file has no such key.
            source = _env_below(loc, env_sources or {})
        if source:
            label += f" (from {source})"
        message = _message(detail, top_level=len(loc) == 1)
        if source and detail["type"] in _CONTAINER_KINDS:
            message += " (give it as JSON)"
        if not about_key and _may_echo(detail, loc):
            message += f" (got {_shown(detail['input'])})"
        section = _made_section(loc, env_made or set())
        if source is None and section:
            # EXOBOT__MATRIX__PASSWORD alone on a mail-only file: the missing keys are not
            # the file's to have, the variable is what asked for Matrix.
            names = _env_below(section, env_sources or {}) or ""
            message += (
                f" ({names} {'make' if ', ' in names else 'makes'} a {_dotted(section)} "
                "section, which the configuration file does not have)"
            )
        problems.append(f"{label}: {message}")
    return problems


def _made_section(loc: tuple[Any, ...], made: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The outermost section around `loc` that only variables made, or None."""
    around = [path for path in made if loc[: len(path)] == path]
    return min(around, key=len) if around else None


def _message(detail: Any, top_level: bool) -> str:
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind == "missing":
        return "required section is missing" if top_level else "required key is missing"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "string_type" and isinstance(detail["input"], int | float):
        return "must be a string (put it in quotes)"
    text = _MESSAGES.get(kind, detail["msg"])
    return text[:1].lower() + text[1:]


def _may_echo(detail: Any, loc: tuple[Any, ...]) -> bool:
    if detail["type"] in _NO_ECHO_KINDS:
        return False
    if any(part in _SECRET_KEYS for part in loc) or loc[:2] in _SECRET_PATHS:
        return False
    return detail["input"] is None or isinstance(detail["input"], str | int | float)


def _shown(value: Any) -> str:
    if value is None:
        return "an empty value"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def _env_source(loc: tuple[Any, ...], sources: Mapping[tuple[str, ...], str]) -> str | None:
    # The longest overridden path that contains loc: EXOBOT__MATRIX__OPERATORS names
    # the variable behind an error at matrix.operators[2].
    matches = [path for path in sources if loc[: len(path)] == path]
    return sources[max(matches, key=len)] if matches else None


def _env_below(loc: tuple[Any, ...], sources: Mapping[tuple[str, ...], str]) -> str | None:
    """The variables that set a key under `loc`, or None."""
    below = sorted(sources[path] for path in sources if path[: len(loc)] == loc)
    return ", ".join(below) or None
