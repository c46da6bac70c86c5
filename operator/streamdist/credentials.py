"""Router credentials: who may talk to an input's MediaMTX, and how each one proves it.

A router serves four kinds of client, each with a credential of its own:

* the operator (control API and metrics): user ``streamdist``, a password derived
  for this input from the installation key;
* readers (the input's output pods): user ``reader``, a password derived likewise,
  read by the pods from the input's credentials Secret (``secretKeyRef``);
* publishers (encoders): the ``user:password`` of ``spec.publishSecretRef``, copied by
  the operator into the input's credentials Secret, which the router reads as env;
* the backup switch, a sidecar of the router pod: no credential, from the pod's own
  loopback only.

Why derived per input from one installation key (HMAC-SHA256 over the input's
namespace, name and uid): a credential that leaks (an output pod's env) opens one
router, and a re-created input gets new ones; nothing per input has to be stored or
read back, so a restarted operator (or its standby replica) computes the same values;
and the key lives in one Secret of the operator's namespace, which tenants cannot
read. The router's config (a ConfigMap) holds only MediaMTX ``sha256:`` hashes of the
derived passwords: 128 random bits each, so the hash gives nothing away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

API_USER = "streamdist"
READ_USER = "reader"
KEY_FIELD = "key"  # the installation key Secret's data key
# The input's credentials Secret (<input>-credentials), written by the operator only.
READ_USER_KEY = "readUser"
READ_PASSWORD_KEY = "readPassword"
SRT_READ_PASSPHRASE_KEY = "srtReadPassphrase"
PUBLISH_USER_KEY = "publishUser"
PUBLISH_PASSWORD_KEY = "publishPassword"
SRT_PASSPHRASE_KEY = "srtPassphrase"

# A publisher's user and password travel in URLs (RTSP userinfo, RTMP query, SRT
# streamid), so only characters no URL form needs to escape; MediaMTX accepts all of them.
PUBLISH_RE = re.compile(r"^([A-Za-z0-9._-]{1,64}):([A-Za-z0-9._-]{8,128})$")
PUBLISH_RULE = (
    "must be user:password, the user 1-64 and the password 8-128 characters of letters, digits, '.', '_' and '-'"
)
# libsrt takes passphrases of 10 to 79 characters.
SRT_PASSPHRASE_LENGTH = range(10, 80)


class CredentialError(ValueError):
    """A credential a user supplied breaks a rule; the message names the rule, not the value."""


@dataclass(frozen=True)
class RouterCredentials:
    """What one input's router accepts, in plain text (held by the operator only)."""

    api_password: str
    read_password: str
    srt_read_passphrase: str
    api_user: str = API_USER
    read_user: str = READ_USER


@dataclass(frozen=True)
class Publisher:
    """The credential encoders publish with, from spec.publishSecretRef."""

    user: str
    password: str


def new_key() -> str:
    """A fresh installation key: 256 random bits, hex."""
    return secrets.token_hex(32)


def derive(key: str, purpose: str, namespace: str, name: str, uid: str) -> str:
    """128 bits for one purpose of one input, as 32 hex characters."""
    message = "\0".join((purpose, namespace, name, uid)).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:32]


def for_input(key: str, namespace: str, name: str, uid: str) -> RouterCredentials:
    return RouterCredentials(
        api_password=derive(key, "api", namespace, name, uid),
        read_password=derive(key, "read", namespace, name, uid),
        srt_read_passphrase=derive(key, "srt-read", namespace, name, uid),
    )


def hashed(value: str) -> str:
    """MediaMTX's ``sha256:`` form of a credential: base64 of its SHA-256."""
    return "sha256:" + base64.b64encode(hashlib.sha256(value.encode()).digest()).decode()


def parse_publisher(value: str, field: str = "spec.publishSecretRef") -> Publisher:
    """``user:password`` from a Secret value; the error names the field and the rule."""
    match = PUBLISH_RE.match(value.strip())
    if match is None:
        raise CredentialError(f"the Secret value named by {field} {PUBLISH_RULE}")
    return Publisher(match.group(1), match.group(2))


def check_srt_passphrase(value: str, field: str = "spec.passphraseSecretRef") -> str:
    """An SRT passphrase libsrt accepts (10 to 79 characters), as the value to use."""
    if len(value) not in SRT_PASSPHRASE_LENGTH:
        raise CredentialError(f"the Secret value named by {field} must be 10 to 79 characters (libsrt's rule)")
    return value
