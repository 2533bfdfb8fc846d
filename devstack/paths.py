"""Well-known locations shared by the devstack modules."""

from __future__ import annotations

import sys
from pathlib import Path

# /work/main: the repository root (devstack/ lives directly under it).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Synapse gets its own venv so that its many pins never touch the project's venv.
SYNAPSE_VENV = PROJECT_ROOT / ".stack" / "synapse-venv"
SYNAPSE_PYTHON = SYNAPSE_VENV / "bin" / "python"

# The SMTP relay needs aiosmtpd, which lives in the project venv; fall back to the
# running interpreter when the venv is elsewhere (e.g. CI installs into the system).
_PROJECT_PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"
PROJECT_PYTHON = _PROJECT_PYTHON if _PROJECT_PYTHON.exists() else Path(sys.executable)
