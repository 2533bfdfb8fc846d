"""Local test/demo server stack for exobot: Dovecot (IMAP + LMTP), an SMTP relay, Synapse.

Command line (from the repository root):

    python -m devstack install
    python -m devstack start --dir DIR [--base-port 20000] [--no-synapse]
    python -m devstack status --dir DIR
    python -m devstack stop --dir DIR

Python API: `devstack.stack.Stack` (also importable as `devstack.Stack`).
"""

from devstack.procs import StackError
from devstack.stack import Stack

__all__ = ["Stack", "StackError"]
