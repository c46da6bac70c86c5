"""Which Secrets the operator may use for a StreamInput or StreamOutput.

The operator can read Secrets a user who creates a StreamOutput may not read. So that
a spec never becomes a way to read someone's Secret (a confused deputy), a Secret is
used only when it opts in: the label ``streamdist.io/secret-usage`` names the use
(``destination`` for urlFrom, ``passphrase`` for passphraseSecretRef, ``publish`` for
publishSecretRef) and its type is Opaque. The check reads metadata only; the data of
a Secret that does not opt in is never fetched, and nothing names it to a pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

USAGE_LABEL = "streamdist.io/secret-usage"
Usage = Literal["destination", "passphrase", "publish"]
FIELDS: dict[str, str] = {
    "destination": "spec.urlFrom.secretKeyRef",
    "passphrase": "spec.passphraseSecretRef",
    "publish": "spec.publishSecretRef",
}


@dataclass(frozen=True)
class SecretMeta:
    """A Secret as a metadata-only read shows it."""

    labels: Mapping[str, str] = field(default_factory=dict)
    type: str = "Opaque"
    resource_version: str = ""


@dataclass(frozen=True)
class Refusal:
    """Why a Secret cannot be used: the condition's reason and message."""

    reason: str
    message: str


def refusal(meta: SecretMeta | None, usage: Usage) -> Refusal | None:
    """None when the Secret may be used for `usage`; else why not (no value is quoted)."""
    where = FIELDS[usage]
    if meta is None:
        return Refusal("SecretNotFound", f"the Secret named by {where} does not exist")
    if meta.labels.get(USAGE_LABEL) != usage or meta.type != "Opaque":
        return Refusal(
            "SecretNotAllowed",
            f"the Secret named by {where} is used only when it is of type Opaque and carries "
            f"the label {USAGE_LABEL}={usage}",
        )
    return None


def missing_key(usage: Usage) -> Refusal:
    return Refusal("SecretNotFound", f"the Secret named by {FIELDS[usage]} has no such key")
