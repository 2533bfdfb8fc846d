"""Our Message-IDs: recognisable, tied to a ticket and signed, so a reply quoting one is trusted."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_OURS = re.compile(r"^<exobot\.(\d{1,12})\.([0-9a-f]{16})\.([0-9a-f]{16})@([^<>@\s]+)>$")


class MessageIds:
    """Mints `<exobot.N.RANDOM.SIGNATURE@domain>` and checks the signature of ids it sees again."""

    def __init__(self, secret: str, domain: str) -> None:
        self._key = secret.encode()
        self.domain = domain

    def _sign(self, ticket: int, nonce: str) -> str:
        message = f"{ticket}.{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:16]

    def mint(self, ticket: int) -> str:
        """A new Message-ID for a mail about `ticket`."""
        nonce = secrets.token_hex(8)
        return f"<exobot.{ticket}.{nonce}.{self._sign(ticket, nonce)}@{self.domain}>"

    def verify(self, message_id: str) -> int | None:
        """The ticket number of one of our Message-IDs with a valid signature, else None."""
        match = _OURS.match(message_id.strip())
        if not match:
            return None
        ticket, nonce, signature = int(match.group(1)), match.group(2), match.group(3)
        if hmac.compare_digest(signature, self._sign(ticket, nonce)):
            return ticket
        return None

    def loop_marker(self) -> str:
        """The token in X-Exobot-Loop that marks mail we sent (a hash: it does not reveal the key)."""
        return hmac.new(self._key, b"loop:" + self.domain.encode(), hashlib.sha256).hexdigest()[:24]
