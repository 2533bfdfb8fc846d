"""TLS material for the test stack: a private CA and a server certificate, made with the
`openssl` command line tool once per stack dir.

DIR/tls/ca.pem      the CA certificate (what a client must trust, e.g. SSL_CERT_FILE)
DIR/tls/server.pem  the server certificate for DNS:localhost and IP:127.0.0.1
DIR/tls/server.key  its private key (unencrypted, 0600: Dovecot reads it as root)

The CA key is deleted once the server certificate is signed: nothing else can ever be
signed by a CA that a test process was told to trust.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from devstack.procs import StackError

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server.key"
VALID_DAYS = 3650

# A complete config of our own: neither the system openssl.cnf nor its defaults matter.
# The extensions satisfy strict verification too (VERIFY_X509_STRICT, the default of
# ssl.create_default_context from Python 3.13): CA with critical basicConstraints and
# keyUsage, leaf with AKI/SKI, SANs and serverAuth.
_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def ensure_certificates(tls_dir: Path) -> tuple[Path, Path, Path]:
    """Create the CA and server certificate under `tls_dir` unless all three files exist.

    Returns (ca.pem, server.pem, server.key). Raises StackError when openssl is missing or
    fails.
    """
    ca, cert, key = tls_dir / CA_FILE, tls_dir / CERT_FILE, tls_dir / KEY_FILE
    if ca.exists() and cert.exists() and key.exists():
        return ca, cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("the `openssl` command is needed for the stack's TLS certificates")
    tls_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tls_dir, prefix=".gen-") as tmp_name:
        tmp = Path(tmp_name)
        cnf = tmp / "openssl.cnf"
        cnf.write_text(_OPENSSL_CNF)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        days = ["-days", str(VALID_DAYS)]
        _run(openssl, "req", "-config", cnf, "-x509", *ec, *days, "-extensions", "ca_ext",
             "-subj", "/O=devstack/CN=devstack test CA", "-keyout", tmp / "ca.key",
             "-out", tmp / CA_FILE)  # fmt: skip
        _run(openssl, "req", "-config", cnf, "-new", *ec, "-subj", "/O=devstack/CN=localhost",
             "-keyout", tmp / KEY_FILE, "-out", tmp / "server.csr")  # fmt: skip
        _run(openssl, "x509", "-req", "-in", tmp / "server.csr", "-CA", tmp / CA_FILE,
             "-CAkey", tmp / "ca.key", "-set_serial", "2", *days, "-extfile", cnf,
             "-extensions", "server_ext", "-out", tmp / CERT_FILE)  # fmt: skip
        (tmp / KEY_FILE).chmod(0o600)
        # Key and certificate before the CA: the existence check above looks at all three.
        for name in (KEY_FILE, CERT_FILE, CA_FILE):
            (tmp / name).replace(tls_dir / name)
    return ca, cert, key


def _run(*args: object) -> None:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"openssl failed ({' '.join(map(str, args[1:3]))}): {result.stderr}")
