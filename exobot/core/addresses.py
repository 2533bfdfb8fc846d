"""The one rule for email addresses, shared by the mail parser, chat, web, API, service and
the mail builder (and by plugins), and the one rule for Matrix user ids.

An address is accepted only when exobot can also write to it: a dot-atom local part in ASCII
(we do not send SMTPUTF8, so ``josé@example.org`` is refused with that reason) and a real
domain name (labels of letters, digits and hyphens, at least one dot; an internationalised
domain is kept in its ASCII ``xn--`` form). Quoted local parts, address literals and
special-use domains such as ``localhost`` or ``.invalid`` are refused too.

The checking itself is done by ``email-validator``, without any network look-up. Accepted addresses are returned lowercased: exobot compares participants
case-insensitively everywhere.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

# RFC 5321's limit on a path is 256 octets with the angle brackets: 254 for the address.
MAX_ADDRESS_LENGTH = 254


# Why an address is refused, as a short code that the message catalogs translate
# (`address.CODE`), found from email-validator's English text (first match wins).
_CODES = (
    ("before the @-sign are not supported", "needs_smtputf8"),
    ("special-use or reserved", "reserved_domain"),
    ("Quoting the part before", "quoted"),
    ("must have an @-sign", "no_at"),
    ("too long", "too_long"),
    ("after the @-sign", "bad_domain"),
    ("period", "bad_dots"),
    ("before the @-sign", "bad_local"),
)


class BadAddress(ValueError):
    """Raised for an address exobot cannot write to: ``reason`` says why in English (logs,
    the API), ``code`` names the reason for the catalogs (``address.CODE``)."""

    def __init__(self, address: str, reason: str, code: str = "invalid") -> None:
        super().__init__(f"{address[:100]!r} is not a usable email address: {reason}")
        self.address = address
        self.reason = reason
        self.code = code


def _code(reason: str) -> str:
    return next((code for words, code in _CODES if words in reason), "invalid")


@lru_cache(maxsize=4096)
def _checked(text: str) -> str | tuple[str, str]:
    """The canonical address, or (reason, code) saying why it is refused (cached)."""
    if len(text) > MAX_ADDRESS_LENGTH:
        return f"longer than {MAX_ADDRESS_LENGTH} characters", "too_long"
    try:
        result = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as error:
        return str(error), _code(str(error))
    return result.ascii_email.lower()


def normalize_address(text: str) -> str:
    """The canonical (ASCII, lowercased) form of ``text``; raises :class:`BadAddress`."""
    if not isinstance(text, str):
        raise BadAddress(repr(text), "not text")
    checked = _checked(text.strip())
    if isinstance(checked, tuple):
        raise BadAddress(text, *checked)
    return checked


def address_problem(text: str) -> str | None:
    """Why ``text`` is not a usable address, or None when it is one."""
    try:
        normalize_address(text)
    except BadAddress as error:
        return error.reason
    return None


def is_valid_address(text: str) -> bool:
    """Whether ``text`` is an address exobot accepts and can write to."""
    return address_problem(text) is None


# A Matrix user id as typed: `@name:server` (no spaces; the server part may carry a port).
_USER_ID = re.compile(r"@[^\s:]+:\S+")


def is_user_id(text: str) -> bool:
    """Whether ``text`` is written like a Matrix user id, ``@name:server``."""
    return isinstance(text, str) and bool(_USER_ID.fullmatch(text))
