"""Secrets kept in files of their own: a bearer token's file, and the TLS client certificate
and key, each read once at load so that a wrong file stops gq at start. A relative path is
in $CREDENTIALS_DIRECTORY when systemd sets it (LoadCredential=), else in the working
directory."""

from __future__ import annotations

import os
import ssl

from gq.core.settings import Invalid


def credential(path: str) -> str:
    """A secret file's path: a relative one is in $CREDENTIALS_DIRECTORY when systemd sets it
    (LoadCredential=), else in the working directory."""
    return os.path.join(os.environ.get("CREDENTIALS_DIRECTORY", ""), path)


def token(path: str, key: str, warnings: list[str]) -> str:
    """The token the file `path` holds, stripped; a warning about `key` (the setting that
    names the file) added to `warnings` when other users can read it. Raises Invalid when
    it cannot be read or is empty."""
    path = credential(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as e:
        raise Invalid(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not text:
        raise Invalid(f"{path} is empty")
    if mode & 0o077:
        warnings.append(f"{key}: {path} can be read by other users (mode {mode & 0o777:o}): chmod 600 it")
    return text


def client_certificate(cert: str, key: str) -> tuple[str, str]:
    """The paths of a TLS client certificate and its key ("": in the certificate's file),
    resolved, once loaded to be sure they are a PEM certificate and its unencrypted key.
    Raises Invalid, its text starting with the key at fault: "client_cert: ..." or
    "client_key: ..."."""
    cert = credential(cert)
    key = credential(key) if key else ""
    for name, path in (("client_cert", cert), ("client_key", key)):
        if path and not os.access(path, os.R_OK):
            raise Invalid(f"{name}: cannot read {path}" + ("" if os.path.exists(path) else ": no such file"))
    try:
        # An encrypted key is refused here (password ""), not asked for on a terminal later.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key or None, password="")
    except OSError as e:  # ssl.SSLError among them
        what = f"{cert} and {key}" if key else cert
        why = getattr(e, "reason", None) or e.strerror or e
        raise Invalid(f"client_cert: {what}: not a PEM certificate with its unencrypted private key "
                      f"({why})") from None
    return cert, key
