"""The page's forms: what the browser sent -> a manifest, or errors by field.

Errors are keyed by the manifest path they concern ("spec.url", "metadata.name"; ""
for the whole form), so the page shows each next to its field. They come from the same
code that judges a spec later: the operator's models and URL parser first, then the API
server (CRD schema and CEL rules) on the real create. No message carries a value the
viewer typed back: the API server's "Invalid value: <value>: rule" keeps only the rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import urls
from ..models import API_VERSION, parse_input, parse_output
from .kubeapi import ApiError

PROTOCOLS = ("srt", "rtmp", "rtmps", "udp", "rtsp")
# field.Error bodies that quote the rejected value (k8s.io/apimachinery field/errors.go).
_VALUE_ECHO = re.compile(
    r'^(Invalid value|Unsupported value|Duplicate value|Not found): ("(?:[^"\\]|\\.)*"|[^:]*)(: )?'
)


@dataclass(frozen=True)
class Outcome:
    """A manifest ready to create, or the reasons it is not (path -> message)."""

    manifest: dict[str, Any] | None
    errors: dict[str, str] = field(default_factory=dict)


def _text(form: Mapping[str, Any], key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _number(form: Mapping[str, Any], key: str) -> int | str | None:
    """An integer field; a non-number stays text so the model names its rule."""
    raw = form.get(key)
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    return int(text) if re.fullmatch(r"-?\d{1,9}", text) else text


def _secret_ref(form: Mapping[str, Any], prefix: str) -> dict[str, str] | None:
    name, key = _text(form, f"{prefix}Name"), _text(form, f"{prefix}Key")
    return {"name": name, "key": key} if name or key else None


def _object(kind: str, form: Mapping[str, Any], namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": _text(form, "name"), "namespace": namespace}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def output_form(form: Mapping[str, Any], namespace: str) -> Outcome:
    """An output from the page's form: input, destination URL or Secret reference, reconnect."""
    spec: dict[str, Any] = {"input": _text(form, "input")}
    if form.get("destination") == "secret":
        spec["urlFrom"] = {"secretKeyRef": _secret_ref(form, "secret") or {"name": "", "key": ""}}
    else:
        spec["url"] = _text(form, "url")
    reconnect = {k: v for k in ("delaySeconds", "maxDelaySeconds") if (v := _number(form, k)) is not None}
    if reconnect:
        spec["reconnect"] = reconnect
    if form.get("suspend") is True:
        spec["suspend"] = True
    manifest = _object("StreamOutput", form, namespace, spec)
    errors = _model_errors(lambda: parse_output(manifest))
    if "url" in spec and "spec.url" not in errors:
        errors.update(_url_errors(spec["url"], _text(form, "protocol")))
    return Outcome(None if errors else manifest, errors)


def _url_errors(url: str, protocol: str) -> dict[str, str]:
    """The operator's own URL rules, and the protocol chosen in the form matching the scheme."""
    try:
        dest = urls.parse(url)
    except urls.URLError as exc:
        return {"spec.url": str(exc)}
    if protocol and dest.scheme != protocol:
        return {"spec.url": f"url scheme must be {protocol}:// for the protocol chosen"}
    return {}


def input_form(form: Mapping[str, Any], namespace: str) -> Outcome:
    """An input from the page's form: protocol, port, Service type, outputs, credentials by reference."""
    spec: dict[str, Any] = {"protocol": _text(form, "protocol") or "udp"}
    optional = {
        "port": _number(form, "port"),
        "maxOutputs": _number(form, "maxOutputs"),
        "passphraseSecretRef": _secret_ref(form, "passphrase"),
        "publishSecretRef": _secret_ref(form, "publish"),
        "allowedSources": [s.strip() for s in re.split(r"[\s,]+", _text(form, "allowedSources")) if s.strip()],
    }
    spec.update({k: v for k, v in optional.items() if v not in (None, "", [])})
    if _text(form, "serviceType"):
        spec["service"] = {"type": _text(form, "serviceType")}
    manifest = _object("StreamInput", form, namespace, spec)
    errors = _model_errors(lambda: parse_input(manifest))
    return Outcome(None if errors else manifest, errors)


def _model_errors(parse: Any) -> dict[str, str]:
    """pydantic's errors, by path; a rule of the whole object is about its name."""
    try:
        parse()
    except ValidationError as exc:
        out: dict[str, str] = {}
        for item in exc.errors(include_url=False, include_input=False):
            path = ".".join(str(p) for p in item["loc"]) or "metadata.name"
            out.setdefault(path, item["msg"].removeprefix("Value error, "))
        return out
    return {}


def api_errors(exc: ApiError) -> dict[str, str]:
    """A refusal as errors by path, with no value the viewer typed echoed back."""
    if exc.status == 422 and exc.causes:
        out: dict[str, str] = {}
        for cause in exc.causes:
            path = str(cause.get("field") or "")
            out.setdefault("" if path == "<nil>" else path, strip_value(str(cause.get("message") or "invalid")))
        return out
    return {"": refusal_message(exc)}


def strip_value(message: str) -> str:
    """'Invalid value: "rtmp://k3y": url scheme must be ...' -> 'url scheme must be ...'."""
    match = _VALUE_ECHO.match(message)
    if not match:
        return message
    rest = message[match.end() :]
    if match.group(1) == "Invalid value":
        return rest or "invalid value"
    return f"{match.group(1).lower()}{'; ' + rest if rest else ''}"


def refusal_message(exc: ApiError) -> str:
    """What to tell the viewer. RBAC's own words for 401/403 (who, which verb, which resource)."""
    if exc.status in (401, 403):
        return exc.message or ("sign in again: the token was refused" if exc.status == 401 else "forbidden")
    return {
        404: "not found: it was deleted, or its namespace does not exist",
        409: "an object of this name exists already (or it changed meanwhile): choose another name or reload",
        422: "the API server found the object invalid",
        429: "the API server is busy: try again in a moment",
    }.get(exc.status, f"the API server refused the request ({exc.status})")
