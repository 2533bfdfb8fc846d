"""Configuration files for the stack's servers (Dovecot 2.3 / 2.4 and Synapse)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Mail processes run as "nobody": Dovecot refuses uid 0 for mail access.
MAIL_UID = 65534
MAIL_GID = 65534

# Every address is a mailbox, except those in the reserved ".invalid" TLD (RFC 2606), the
# domain nowhere.example and bare names without a domain: they give "550 5.1.1 User doesn't
# exist", so tests can exercise bounces (nowhere.example passes exobot's own address rule,
# which refuses .invalid before any mail is sent). The static userdb verifies users through the passdbs: the static one
# (restricted by this filter), then an empty passwd-file that answers "unknown user"
# (without it Dovecot reports "all passdbs skipped" as a 451 internal error).
USERNAME_FILTER = "*@* !*.invalid !*@nowhere.example"
NO_USERS_FILE = "/dev/null"

# Any rate far above what a test suite can produce.
_UNLIMITED = {"per_second": 100000, "burst_count": 1000000}

# Every rc_* section Synapse 1.1xx knows; unknown ones are ignored by older versions.
_RATE_LIMITS = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 100000,
        "sleep_delay": 1,
        "reject_limit": 100000,
        "concurrent": 1000,
    },
}


@dataclass(frozen=True)
class DovecotParams:
    """Everything the Dovecot configuration depends on."""

    run_dir: Path  # base_dir and state_dir live here
    log_file: Path
    mail_root: Path  # one home per address below it, owned by MAIL_UID
    imap_port: int
    lmtp_port: int
    password: str
    # TLS (devstack.tls): STARTTLS on imap_port and implicit TLS on imaps_port. Without a
    # certificate (None), `ssl = no` and no imaps listener, as before.
    imaps_port: int = 0
    ssl_cert: Path | None = None
    ssl_key: Path | None = None


def dovecot_version() -> str:
    """The installed Dovecot's version, e.g. "2.3.19.1" (from `dovecot --version`)."""
    output = subprocess.run(
        ["dovecot", "--version"], capture_output=True, text=True, check=True
    ).stdout
    return output.split()[0] if output.strip() else ""


def _major_minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise RuntimeError(f"cannot parse Dovecot version {version!r}")
    return int(match.group(1)), int(match.group(2))


def render_dovecot_conf(params: DovecotParams, version: str) -> str:
    """Render a standalone dovecot.conf (no system conf.d) for Dovecot 2.3 or 2.4+.

    2.4 changed the syntax (versioned config, named passdb/userdb blocks, mail_driver and
    mail_path instead of mail_location, %{...} variables), so each gets its own template.
    """
    if _major_minor(version) >= (2, 4):
        return _dovecot_24(params)
    return _dovecot_23(params)


def _mailboxes() -> str:
    # The usual special-use folders, so that clients (and the bot) find Sent/Trash.
    return """\
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }"""


def _services(params: DovecotParams) -> str:
    # `listen` (global) already restricts every inet listener to 127.0.0.1.
    if params.ssl_cert is not None and params.imaps_port:
        imaps = f"    port = {params.imaps_port}\n    ssl = yes"
    else:
        imaps = "    port = 0"
    return f"""\
service imap-login {{
  inet_listener imap {{
    port = {params.imap_port}
  }}
  inet_listener imaps {{
{imaps}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {params.lmtp_port}
  }}
}}
"""


def _ssl_23(p: DovecotParams) -> str:
    # `ssl = yes`: STARTTLS offered on the imap listener, TLS on imaps, neither required.
    # `<path`: the files are read by the config process, as root.
    if p.ssl_cert is None:
        return "ssl = no"
    return f"ssl = yes\nssl_cert = <{p.ssl_cert}\nssl_key = <{p.ssl_key}"


def _ssl_24(p: DovecotParams) -> str:
    # 2.4 renamed the settings and takes plain paths (no `<`).
    if p.ssl_cert is None:
        return "ssl = no"
    return f"ssl = yes\nssl_server_cert_file = {p.ssl_cert}\nssl_server_key_file = {p.ssl_key}"


def _dovecot_23(p: DovecotParams) -> str:
    return f"""\
# Generated by devstack for Dovecot 2.3: test stack only, never for production.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {p.run_dir}/base
state_dir = {p.run_dir}/state
instance_name = devstack-{p.imap_port}
log_path = {p.log_file}
{_ssl_23(p)}
# Plaintext logins stay allowed without TLS (exobot's `security: none`).
disable_plaintext_auth = no
auth_mechanisms = plain login
# Full address as login name, lower-cased like any real mail server does.
auth_username_format = %Lu
# Empty: allow every character (e.g. '+' or '=' in addresses).
auth_username_chars =
# Failed logins answer at once instead of after 2 s.
auth_failure_delay = 0
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100
# No fsync per delivered mail: a test stack need not survive a power cut, and with fsync the
# server, not exobot, set the pace of the end-to-end benchmark (35 mails a second, not 100+).
mail_fsync = never

passdb {{
  driver = static
  args = password={p.password}
  username_filter = {USERNAME_FILTER}
}}
passdb {{
  driver = passwd-file
  args = {NO_USERS_FILE}
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_GID} home={p.mail_root}/%Lu
}}

namespace inbox {{
  inbox = yes
{_mailboxes()}
}}

{_services(p)}"""


def _dovecot_24(p: DovecotParams) -> str:
    return f"""\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
# Generated by devstack for Dovecot 2.4: test stack only, never for production.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {p.run_dir}/base
state_dir = {p.run_dir}/state
instance_name = devstack-{p.imap_port}
log_path = {p.log_file}
{_ssl_24(p)}
# Plaintext logins stay allowed without TLS (exobot's `security: none`).
auth_allow_cleartext = yes
auth_mechanisms = plain login
# Full address as login name, lower-cased like any real mail server does.
auth_username_format = %{{user | lower}}
# Empty: allow every character (e.g. '+' or '=' in addresses).
auth_username_chars =
# Failed logins answer at once instead of after 2 s.
auth_failure_delay = 0
mail_driver = maildir
mail_path = ~/Maildir
mail_max_userip_connections = 100
# No fsync per delivered mail (see the 2.3 template).
mail_fsync = never

passdb static {{
  password = {p.password}
  username_filter = {USERNAME_FILTER}
}}
passdb unknown {{
  driver = passwd-file
  passwd_file_path = {NO_USERS_FILE}
}}
userdb static {{
  fields {{
    uid = {MAIL_UID}
    gid = {MAIL_GID}
    home = {p.mail_root}/%{{user | lower}}
  }}
}}

namespace inbox {{
  inbox = yes
{_mailboxes()}
}}

{_services(p)}"""


@dataclass(frozen=True)
class SynapseParams:
    """Everything the Synapse configuration depends on."""

    data_dir: Path
    port: int
    server_name: str
    registration_shared_secret: str
    macaroon_secret_key: str


def render_synapse_config(p: SynapseParams) -> str:
    """Render homeserver.yaml (as JSON, which is valid YAML: no PyYAML needed)."""
    config = {
        "server_name": p.server_name,
        "public_baseurl": f"http://127.0.0.1:{p.port}/",
        "pid_file": str(p.data_dir / "homeserver.pid"),
        "signing_key_path": str(p.data_dir / "signing.key"),
        "media_store_path": str(p.data_dir / "media"),
        "listeners": [
            {
                "port": p.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(p.data_dir / "homeserver.db")}},
        "registration_shared_secret": p.registration_shared_secret,
        "macaroon_secret_key": p.macaroon_secret_key,
        "enable_registration": False,
        "report_stats": False,
        "enable_metrics": False,
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        # Cheap password hashing: logins take ~20 ms instead of ~470 ms.
        "bcrypt_rounds": 4,
        **_RATE_LIMITS,
    }
    return json.dumps(config, indent=2) + "\n"
