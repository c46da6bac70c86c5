"""Hostile specs through `kubectl apply` on the real apiserver, as a user would type them.

Each case is YAML plus a verdict: either the apiserver refuses it with a message a person
understands (the CRD schema and its CEL rules), or the operator accepts the object and
ends it with a Ready condition (reason, message) and an Event on that object alone (or,
for hostile-looking but valid input, runs it safely: masked destination, one argv
element). Meanwhile a GOOD input with three outputs in the same namespace keeps its
pods (same UIDs), its children, its status and its Events: checked after every case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from streamdist_dev.kubectl import Kubectl
from tests.reliability.support import (
    MANAGED,
    GoodSet,
    pods,
    poll,
    publisher,
    ready,
    secret,
    si,
    so,
    text,
    url_from,
)

pytestmark = pytest.mark.timeout(900)

SCHEME = "url scheme must be one of srt://, rtmp://, rtmps://, udp://, rtsp://"
CHARS = "url must not contain spaces, control characters, quotes, backslashes or the shell characters"
CREDS = "srt and udp urls cannot carry user credentials"
OUT_NAME = "name must be at most 54 characters of lowercase letters, digits and '-', starting with a letter"
IN_NAME = "name must be at most 56 characters of lowercase letters, digits and '-', starting with a letter"
OTHER_NS_INPUT = "inputs of other namespaces cannot be used"
SECRET_WORD = "Pa55-w0rd-hostile"  # every credential the table hides; must never show


@dataclass(frozen=True)
class Case:
    id: str
    yaml: str
    reject: str = ""  # kubectl apply must fail and say this
    reason: str = ""  # else: the Ready condition's reason the object ends with
    message: str = ""  # ... and words its message (and Event) must hold
    phase: str = ""
    setup: str = ""  # applied first, must be accepted
    patch: tuple[str, ...] = ()  # `kubectl patch` args instead of applying `yaml`
    running: bool = False  # valid: the object ends up running (one pod for an output)
    event: bool = True  # an Event is expected on the object
    check: Callable[[Kubectl, dict[str, Any]], None] | None = field(default=None, compare=False)


def target(case: Case) -> tuple[str, str]:
    import yaml

    doc = list(yaml.safe_load_all(case.yaml))[-1]
    return ("si" if doc["kind"] == "StreamInput" else "so"), doc["metadata"]["name"]


# --- extra checks for the valid-but-hostile cases -----------------------------------


def destination_is(expected: str) -> Callable[[Kubectl, dict[str, Any]], None]:
    def check(k: Kubectl, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        assert obj["status"]["destination"] == expected
        # spec.url holds what the user typed (kubectl describe shows it: urlFrom is the way
        # to keep a key out of the object); what the operator writes must not.
        shown = k("get", "so", name, "-o", "wide").stdout + k("get", "streamdist", "-o", "wide").stdout
        status = str(obj["status"])
        for place, body in (("status", status), ("printer columns", shown)):
            assert SECRET_WORD not in body, f"credential shown in {place}: {body}"
        _argv_is_safe(k, obj)

    return check


def _argv_is_safe(k: Kubectl, obj: dict[str, Any]) -> None:
    """The destination is exactly one argv element, the last, and adds no option: FFmpeg's
    part (before an SRT output's `|` to srt-live-transmit) names one output format."""
    name = obj["metadata"]["name"]
    (pod,) = pods(k, f"streamdist.io/output={name}")
    args = pod["spec"]["containers"][0]["args"]
    url = obj["spec"].get("url") or "$(STREAMDIST_DESTINATION)"
    assert args[-1] == url, args
    assert args.count(url) == 1 and not args[-1].startswith("-")
    ffmpeg = args[: args.index("|")] if "|" in args else args
    assert ffmpeg.count("-f") == 1 and "null" not in args, args


def argv_safe(k: Kubectl, obj: dict[str, Any]) -> None:
    _argv_is_safe(k, obj)


def long_names_fit(k: Kubectl, obj: dict[str, Any]) -> None:
    (pod,) = pods(k, f"streamdist.io/output={obj['metadata']['name']}")
    for value in pod["metadata"]["labels"].values():
        assert len(value) <= 63
    assert len(pod["metadata"]["name"]) <= 253
    inp = obj["spec"]["input"]
    poll("the 56-character input's router", lambda: (ready(k, "si", inp) or {}).get("status") == "True")
    svcs = {s["metadata"]["name"] for s in k.items("services", f"streamdist.io/input={inp}")}
    assert svcs == {inp, f"{inp}-ingest"} and all(len(s) <= 63 for s in svcs)


def port_clash_names_good(k: Kubectl, obj: dict[str, Any]) -> None:
    assert not k.items("deployments", f"streamdist.io/input={obj['metadata']['name']}")


# --- the table ----------------------------------------------------------------------

N63, N253, N254 = "a" * 63, "a" * 253, "a" * 254
HOST_10K = "h" * 10_000 + ".example"
O54 = "o" + "x" * 52 + "0"  # the longest output name allowed
I56 = "i" + "n" * 54 + "1"  # the longest input name allowed

CASES: list[Case] = [
    # ---- schemes -------------------------------------------------------------------
    Case("scheme-http", text(so("h-http", url="http://live.example/app")), reject=SCHEME),
    Case("scheme-file", text(so("h-file", url="file:///etc/passwd")), reject=SCHEME),
    Case("scheme-uppercase", text(so("h-upper", url="SRT://dec.example:9000")), reject=SCHEME),
    Case("scheme-missing-slash", text(so("h-slash", url="rtmp:/live.example/app/key")), reject=SCHEME),
    Case("url-empty", text(so("h-empty", url="")), reject=SCHEME),
    Case("url-is-an-option", text(so("h-opt", url="-f null -y /tmp/x")), reject=SCHEME),
    # ---- shell metacharacters, control characters ----------------------------------
    Case("shell-semicolon", text(so("h-semi", url="udp://h.example:5000;reboot")), reject=CHARS),
    Case("shell-subst", text(so("h-subst", url="rtmp://h.example/app/$(reboot)")), reject=CHARS),
    Case("shell-backtick", text(so("h-tick", url="rtmp://h.example/app/`id`")), reject=CHARS),
    Case("shell-pipe", text(so("h-pipe", url="udp://h.example:5000|nc")), reject=CHARS),
    Case("shell-redirect", text(so("h-redir", url="udp://h.example:5000>/etc/x")), reject=CHARS),
    Case("quote", text(so("h-quote", url="rtmp://h.example/app/'k'")), reject=CHARS),
    Case("backslash", text(so("h-bslash", url="rtmp://h.example/app\\key")), reject=CHARS),
    Case("space-option", text(so("h-space", url="udp://h.example:5000 -f null")), reject=CHARS),
    Case("newline-option", text(so("h-nl", url="udp://h.example:5000\n-f\nnull")), reject=CHARS),
    Case("carriage-return", text(so("h-cr", url="udp://h.example:5000\r")), reject=CHARS),
    Case("tab", text(so("h-tab", url="udp://h.example:5000\t-y")), reject=CHARS),
    Case("nul", text(so("h-nul", url="udp://h.example:5000\x00-f")), reject=CHARS),
    Case("del-char", text(so("h-del", url="udp://h.example:5000\x7f")), reject=CHARS),
    # ---- hosts ---------------------------------------------------------------------
    Case("host-10kB", text(so("h-10k", url=f"udp://{HOST_10K}:5000")),
         reject="may not be more than 2048 bytes"),
    Case("host-10kB-from-secret", text(secret("h-10k-url", url=f"udp://{HOST_10K}:5000"),
                                       so("h-10k-s", urlFrom=url_from("h-10k-url"))),
         reason="InvalidURL", message="url must be at most 2048 characters", phase="Invalid"),
    Case("host-label-too-long", text(so("h-label", url=f"udp://{'a' * 300}.example:5000")),
         reason="InvalidURL", message="url host is not a valid DNS name or IP address", phase="Invalid"),
    Case("host-empty-label", text(so("h-dots", url="udp://h..example:5000")),
         reason="InvalidURL", message="url host is not a valid DNS name", phase="Invalid"),
    Case("host-unicode", text(so("h-uni", url="udp://bücher.example:5000")),
         reason="InvalidURL", message="use punycode for international names", phase="Invalid"),
    Case("host-unicode-rtl-override", text(so("h-rtl", url="rtmp://live.example\u202e/app/key")),
         reject="url must not contain control, invisible formatting"),
    Case("host-punycode", text(so("h-puny", url="udp://xn--bcher-kva.example:5000")),
         reason="Streaming", running=True, check=destination_is("udp://xn--bcher-kva.example:5000")),
    Case("host-ipv6", text(so("h-ipv6", url="srt://[2001:db8::1]:9000?latency=200000")),
         reason="Streaming", running=True, check=destination_is("srt://[2001:db8::1]:9000?latency=200000")),
    Case("host-ipv6-unclosed", text(so("h-ipv6x", url="udp://[2001:db8::1:5000")),
         reason="InvalidURL", message="url is malformed: Invalid IPv6 URL", phase="Invalid"),
    Case("host-missing", text(so("h-nohost", url="rtmp:///app/key")),
         reason="InvalidURL", message="url needs a host", phase="Invalid"),
    # ---- ports in URLs -------------------------------------------------------------
    Case("url-port-0", text(so("h-p0", url="udp://h.example:0")),
         reason="InvalidURL", message="udp url needs a port between 1 and 65535", phase="Invalid"),
    Case("url-port-65536", text(so("h-p65536", url="udp://h.example:65536")),
         reason="InvalidURL", message="its port must be a number between 1 and 65535", phase="Invalid"),
    Case("url-port-huge", text(so("h-phuge", url="srt://h.example:99999999999999999999")),
         reason="InvalidURL", message="its port must be a number between 1 and 65535", phase="Invalid"),
    Case("url-port-missing", text(so("h-pnone", url="udp://h.example")),
         reason="InvalidURL", message="udp url needs a port between 1 and 65535", phase="Invalid"),
    Case("url-port-signed", text(so("h-psign", url="udp://h.example:+5000")),
         reason="InvalidURL", message="url is malformed", phase="Invalid"),
    Case("listener-port-0", text(so("h-lp0", url="srt://:0?mode=listener")),
         reason="InvalidURL", message="srt url needs a port between 1 and 65535", phase="Invalid"),
    # ---- query strings that try to add FFmpeg options -------------------------------
    Case("srt-localport-listener", text(so("h-lport", url="srt://h.example:1?localport=1&mode=listener")),
         reason="InvalidURL", message="srt url has an unsupported query parameter; allowed:", phase="Invalid"),
    Case("udp-dash-f", text(so("h-qf", url="udp://h.example:5000?-f=null")),
         reason="InvalidURL", message="udp url has an unsupported query parameter; allowed:", phase="Invalid"),
    Case("udp-fifo", text(so("h-fifo", url="udp://h.example:5000?fifo_size=1&overrun_nonfatal=1")),
         reason="InvalidURL", message="udp url has an unsupported query parameter; allowed:", phase="Invalid"),
    Case("srt-mode-rendezvous", text(so("h-rdv", url="srt://h.example:9000?mode=rendezvous")),
         reject="srt url mode must be caller or listener"),
    Case("srt-mode-second-value", text(so("h-rdv2", url="srt://h.example:9000?mode=listener&mode=rendezvous")),
         reason="InvalidURL", message="srt url repeats a query parameter", phase="Invalid"),
    # FFmpeg's srt/udp protocols read options from the first '?' and the first value
    # of each: a '#' or a repeated parameter must not let a URL say something to FFmpeg
    # that the operator's own reading (Service, endpoint, allowed options) does not see.
    Case("srt-options-behind-fragment", text(so("h-frag", url="srt://h.example:9000#?mode=listener&localport=1")),
         reason="InvalidURL", message="cannot contain '#'", phase="Invalid"),
    Case("udp-options-behind-fragment", text(so("h-ufrag", url="udp://h.example:5000#?localport=1&reuse=1")),
         reason="InvalidURL", message="cannot contain '#'", phase="Invalid"),
    Case("srt-mode-twice", text(so("h-mode2", url="srt://h.example:9000?mode=caller&mode=listener")),
         reason="InvalidURL", message="repeats a query parameter", phase="Invalid"),
    # urllib decodes %XX in query keys and values, FFmpeg does not: the operator would
    # read `mode=listener` (Service, endpoint) where FFmpeg reads an unknown `%6Dode`.
    Case("srt-percent-encoded-mode", text(so("h-pmode", url="srt://h.example:9000?%6Dode=listener")),
         reason="InvalidURL", phase="Invalid"),
    Case("rtmp-query-is-not-an-option", text(so("h-rq", url="rtmp://h.example/app/key?-f=null")),
         reason="Streaming", running=True, check=argv_safe),
    Case("rtsp-query-is-not-an-option", text(so("h-rsq", url="rtsp://h.example:8554/x?-rtsp_flags=listen")),
         reason="Streaming", running=True, check=argv_safe),
    # ---- credentials in every place a URL can hold them ------------------------------
    Case("creds-srt-userinfo", text(so("h-csrt", url=f"srt://u:{SECRET_WORD}@h.example:9000")), reject=CREDS),
    Case("creds-udp-userinfo", text(so("h-cudp", url=f"udp://{SECRET_WORD}@h.example:5000")), reject=CREDS),
    Case("creds-rtmp-everywhere",
         text(so("h-crtmp", url=f"rtmp://user:{SECRET_WORD}@live.example/app/{SECRET_WORD}?token={SECRET_WORD}"
                                f"#{SECRET_WORD}")),
         reason="Streaming", running=True, check=destination_is("rtmp://***@live.example/app/***?token=***#***")),
    Case("creds-rtmps-user-only", text(so("h-cuser", url=f"rtmps://{SECRET_WORD}@live.example:443/app/{SECRET_WORD}")),
         reason="Streaming", running=True, check=destination_is("rtmps://***@live.example:443/app/***")),
    Case("creds-rtsp-userinfo", text(so("h-crtsp", url=f"rtsp://admin:{SECRET_WORD}@[2001:db8::1]:8554/program")),
         reason="Streaming", running=True, check=destination_is("rtsp://***@[2001:db8::1]:8554/program")),
    Case("creds-srt-query",
         text(so("h-csq", url=f"srt://h.example:9000?passphrase={SECRET_WORD}&streamid={SECRET_WORD}&latency=200")),
         reason="Streaming", running=True,
         check=destination_is("srt://h.example:9000?passphrase=***&streamid=***&latency=200")),
    Case("creds-from-secret-srt-userinfo",
         text(secret("h-cs-url", url=f"srt://u:{SECRET_WORD}@h.example:9000"), so("h-cs", urlFrom=url_from("h-cs-url"))),
         reason="InvalidURL", message="srt url cannot carry user credentials", phase="Invalid"),
    # ---- URLs from Secrets: the CRD never sees them --------------------------------
    Case("secret-url-shell", text(secret("h-ss-url", url=f"rtmp://h.example/app/{SECRET_WORD} -f null;reboot"),
                                  so("h-ss", urlFrom=url_from("h-ss-url"))),
         reason="InvalidURL", message="url contains whitespace, control or shell characters", phase="Invalid"),
    Case("secret-url-newline", text(secret("h-snl-url", url=f"udp://h.example:5000\n-i\n/etc/{SECRET_WORD}"),
                                    so("h-snl", urlFrom=url_from("h-snl-url"))),
         reason="InvalidURL", message="url contains whitespace, control or shell characters", phase="Invalid"),
    Case("secret-url-option", text(secret("h-sopt-url", url=f"-f null {SECRET_WORD}"),
                                   so("h-sopt", urlFrom=url_from("h-sopt-url"))),
         reason="InvalidURL", message="url contains whitespace", phase="Invalid"),
    Case("secret-url-http", text(secret("h-shttp-url", url=f"http://h.example/{SECRET_WORD}"),
                                 so("h-shttp", urlFrom=url_from("h-shttp-url"))),
         reason="InvalidURL", message="url scheme must be one of srt, rtmp, rtmps, udp, rtsp", phase="Invalid"),
    Case("secret-key-missing", text(secret("h-skey-url", usage="destination", other="rtmp://h.example/app/k"),
                                    so("h-skey", urlFrom=url_from("h-skey-url"))),
         reason="SecretNotFound", message="the Secret named by spec.urlFrom.secretKeyRef has no such key",
         phase="Failed"),
    # ---- Secrets that did not opt in: never read, never named to a pod -------------------
    Case("secret-without-usage-label", text(secret("h-snl-dest", usage="", url=f"rtmp://h.example/app/{SECRET_WORD}"),
                                            so("h-snlab", urlFrom=url_from("h-snl-dest"))),
         reason="SecretNotAllowed", message="streamdist.io/secret-usage=destination", phase="Failed"),
    Case("secret-labelled-for-another-use", text(secret("h-swrong", usage="publish", url="udp://h.example:5000"),
                                                 so("h-swr", urlFrom=url_from("h-swrong"))),
         reason="SecretNotAllowed", message="of type Opaque and carries the label", phase="Failed"),
    Case("secret-not-opaque", text({**secret("h-stls", url="udp://h.example:5000"), "type": "streamdist.io/other"},
                                   so("h-stl", urlFrom=url_from("h-stls"))),
         reason="SecretNotAllowed", message="spec.urlFrom.secretKeyRef", phase="Failed"),
    Case("passphrase-secret-without-label", text(publisher("h-ppnl"), secret("h-ppnl-pp", usage="",
                                                                               passphrase="long-enough-passphrase"),
                                                 si("h-ppnl", protocol="srt", passphraseSecretRef={
                                                     "name": "h-ppnl-pp", "key": "passphrase"})),
         reason="SecretNotAllowed", message="streamdist.io/secret-usage=passphrase", phase="Failed"),
    Case("publish-secret-without-label", text(secret("h-pubnl-publish", usage="", credential="enc:long-enough-1"),
                                              si("h-pubnl", protocol="rtmp")),
         reason="SecretNotAllowed", message="streamdist.io/secret-usage=publish", phase="Failed"),
    Case("publish-credential-malformed", text(publisher("h-pubbad", f"enc:{SECRET_WORD} with spaces"),
                                              si("h-pubbad", protocol="rtsp")),
         reason="InvalidPublishCredential", message="must be user:password", phase="Failed"),
    Case("passphrase-too-short", text(publisher("h-ppshort"), secret("h-ppshort-pp", passphrase="short"),
                                      si("h-ppshort", protocol="srt", passphraseSecretRef={"name": "h-ppshort-pp",
                                                                                           "key": "passphrase"})),
         reason="InvalidPassphrase", message="10 to 79 characters", phase="Failed"),
    Case("input-needs-publish-credential", text({**si("h-nopub", protocol="srt"), "spec": {"protocol": "srt"}}),
         reject="publishSecretRef is required"),
    Case("allowed-sources-not-a-cidr", text(si("h-cidr", allowedSources=["10.0.0.1"])),
         reject="spec.allowedSources[0]"),
    # ---- destinations that are streamdist routers or ingests -----------------------------
    Case("destination-router-short-name", text(so("h-rt1", url="rtsp://good:8554/good")),
         reason="ForbiddenDestination", message="must not be a streamdist router or ingest", phase="Failed"),
    Case("destination-router-fqdn-dot", text(so("h-rt2", url="rtsp://good.@NS@.svc.cluster.local.:8554/good")),
         reason="ForbiddenDestination", message="must not be a streamdist router or ingest", phase="Failed"),
    Case("destination-other-namespace-router", text(so("h-rt3", url="rtsp://elsewhere.@OTHER@.svc:8554/elsewhere")),
         reason="ForbiddenDestination", message="must not be a streamdist router or ingest", phase="Failed"),
    Case("destination-other-namespace-ingest", text(so("h-rt4", url="udp://elsewhere-ingest.@OTHER@:5000")),
         reason="ForbiddenDestination", message="must not be a streamdist router or ingest", phase="Failed"),
    Case("destination-router-from-secret", text(secret("h-rt5-url", url="rtmp://good-ingest.@NS@.svc/app/k"),
                                                so("h-rt5", urlFrom=url_from("h-rt5-url"))),
         reason="ForbiddenDestination", message="must not be a streamdist router or ingest", phase="Failed"),
    Case("secret-url-valid-keyed", text(secret("h-sok-url", url=f"rtmps://live.example:443/app/{SECRET_WORD}"),
                                        so("h-sok", urlFrom=url_from("h-sok-url"))),
         reason="Streaming", running=True, check=destination_is("rtmps://live.example:443/app/***")),
    # ---- other namespaces ------------------------------------------------------------
    Case("input-slash-namespace", text(so("h-insl", input="@OTHER@/elsewhere", url="udp://h.example:5000")),
         reject=OTHER_NS_INPUT),
    Case("input-dotted-namespace", text(so("h-indot", input="elsewhere.@OTHER@", url="udp://h.example:5000")),
         reject=OTHER_NS_INPUT),
    Case("input-only-in-other-namespace", text(so("h-inother", input="elsewhere", url="udp://h.example:5000")),
         reason="InputNotFound", message="StreamInput 'elsewhere' not found in namespace '@NS@'", phase="Failed"),
    Case("secret-ref-namespace-field", text(so("h-secns", urlFrom={"secretKeyRef": {
        "name": "elsewhere-url", "key": "url", "namespace": "@OTHER@"}})),
         reject='unknown field "spec.urlFrom.secretKeyRef.namespace"'),
    Case("secret-only-in-other-namespace", text(so("h-secother", urlFrom=url_from("elsewhere-url"))),
         reason="SecretNotFound", message="the Secret named by spec.urlFrom.secretKeyRef does not exist",
         phase="Failed"),
    Case("passphrase-ref-namespace-field", text(si("h-ppns", protocol="srt", passphraseSecretRef={
        "name": "elsewhere-pass", "key": "passphrase", "namespace": "@OTHER@"})),
         reject='unknown field "spec.passphraseSecretRef.namespace"'),
    # The router would never start (CreateContainerConfigError on a real node): the
    # operator must say so on the input, as it does for an output's missing Secret.
    Case("passphrase-secret-only-in-other-namespace",
         text(publisher("h-ppother"),
              si("h-ppother", protocol="srt", passphraseSecretRef={"name": "elsewhere-pass", "key": "passphrase"})),
         reason="SecretNotFound", message="the Secret named by spec.passphraseSecretRef does not exist",
         phase="Failed"),
    Case("object-namespace-mismatch",
         text({**so("h-nsmis", url="udp://h.example:5000"),
               "metadata": {"name": "h-nsmis", "namespace": "@OTHER@"}}),
         reject="does not match the namespace"),
    # ---- names at the limits ---------------------------------------------------------
    Case("output-name-63", text(so(N63, url="udp://h.example:5000")), reject=OUT_NAME),
    Case("output-name-253", text(so(N253, url="udp://h.example:5000")), reject=OUT_NAME),
    Case("output-name-254", text(so(N254, url="udp://h.example:5000")), reject="must be no more than 253 characters"),
    Case("input-name-63", text(si(N63)), reject=IN_NAME),
    Case("input-name-253", text(si(N253)), reject=IN_NAME),
    Case("output-name-dotted", text(so("a.b.c", url="udp://h.example:5000")), reject=OUT_NAME),
    Case("output-name-digit-first", text(so("9lives", url="udp://h.example:5000")), reject=OUT_NAME),
    Case("names-at-the-limits", text(publisher(I56), si(I56, protocol="srt"),
                                     so(O54, input=I56, url="udp://h.example:5000")),
         reason="Streaming", running=True, check=long_names_fit),
    # ---- ports of inputs ---------------------------------------------------------------
    Case("input-port-0", text(si("h-ip0", port=0)), reject="port must be between 1024 and 65535"),
    Case("input-port-65536", text(si("h-ip65536", port=65536)), reject="port must be between 1024 and 65535"),
    Case("input-port-privileged", text(si("h-ip22", port=22)), reject="port must be between 1024 and 65535"),
    Case("input-port-negative", text(si("h-ipneg", port=-1)), reject="port must be between 1024 and 65535"),
    Case("input-port-string", text(si("h-ipstr", port="20000")), reject="spec.port in body must be of type integer"),
    Case("input-port-of-good-input", text(si("h-clash", port="@PORT@")),
         reason="PortConflict", message="is already used by StreamInput @NS@/good", phase="Failed",
         check=port_clash_names_good),
    Case("input-port-twice", text(si("h-second", port=24555)), setup=text(si("h-first", port=24555)),
         reason="PortConflict", message="port 24555 is already used by StreamInput @NS@/h-first", phase="Failed"),
    # ---- other fields --------------------------------------------------------------------
    Case("input-protocol-uppercase", text(si("h-proto", protocol="SRT")), reject='Unsupported value: "SRT"'),
    Case("input-service-headless", text(si("h-svc", service={"type": "Headless"})),
         reject='Unsupported value: "Headless"'),
    Case("input-max-outputs-huge", text(si("h-maxo", maxOutputs=100000)),
         reject="should be less than or equal to 200"),
    Case("input-unknown-field", text(si("h-unk", protocol="udp", command=["sh", "-c", "id"])),
         reject='unknown field "spec.command"'),
    Case("output-suspend-string", text(so("h-susp", url="udp://h.example:5000", suspend="yes")),
         reject="spec.suspend in body must be of type boolean"),
    Case("output-url-and-url-from", text(so("h-both", url="udp://h.example:5000", urlFrom=url_from("x"))),
         reject="exactly one of spec.url and spec.urlFrom must be set"),
    Case("too-many-outputs", text(so("h-tiny-b", input="h-tiny", url="udp://h.example:5001")),
         setup=text(si("h-tiny", maxOutputs=1), so("h-tiny-a", input="h-tiny", url="udp://h.example:5000")),
         reason="TooManyOutputs", message="feeds at most 1 outputs (maxOutputs)", phase="Failed"),
    # ---- flipping spec.input ---------------------------------------------------------------
    Case("flip-input-apply", text(so("h-flip", input="elsewhere", url="udp://h.example:5000")),
         setup=text(so("h-flip", url="udp://h.example:5000")),
         reject="spec.input is immutable: create a new StreamOutput"),
    Case("flip-input-patch", text(so("h-flip2", url="udp://h.example:5000")),
         setup=text(so("h-flip2", url="udp://h.example:5000")),
         patch=("so", "h-flip2", "--type=merge", "-p", '{"spec":{"input":"elsewhere"}}'),
         reject="spec.input is immutable"),
    Case("flip-url-to-url-from-patch", text(so("h-flip3", url="udp://h.example:5000")),
         setup=text(so("h-flip3", url="udp://h.example:5000")),
         patch=("so", "h-flip3", "--type=merge", "-p", '{"spec":{"urlFrom":{"secretKeyRef":{"name":"x","key":"y"}}}}'),
         reject="exactly one of spec.url and spec.urlFrom must be set"),
    # ---- absurd reconnect delays -------------------------------------------------------------
    Case("reconnect-delay-0", text(so("h-d0", url="udp://h.example:5000", reconnect={"delaySeconds": 0})),
         reject="spec.reconnect.delaySeconds in body should be greater than or equal to 1"),
    Case("reconnect-delay-negative", text(so("h-dneg", url="udp://h.example:5000",
                                             reconnect={"delaySeconds": -30, "maxDelaySeconds": 30})),
         reject="should be greater than or equal to 1"),
    Case("reconnect-max-a-year", text(so("h-dyear", url="udp://h.example:5000",
                                         reconnect={"delaySeconds": 2, "maxDelaySeconds": 31_536_000})),
         reject="spec.reconnect.maxDelaySeconds in body should be less than or equal to 3600"),
    Case("reconnect-delay-int64-overflow", text(so("h-dovf", url="udp://h.example:5000",
                                                   reconnect={"delaySeconds": 2**63, "maxDelaySeconds": 30})),
         reject="must be of type integer"),
    Case("reconnect-delay-fraction", text(so("h-dfrac", url="udp://h.example:5000",
                                             reconnect={"delaySeconds": 1.5, "maxDelaySeconds": 30})),
         reject="must be of type integer"),
    Case("reconnect-max-below-delay", text(so("h-dord", url="udp://h.example:5000",
                                              reconnect={"delaySeconds": 300, "maxDelaySeconds": 299})),
         reject="reconnect.maxDelaySeconds must be greater than or equal to reconnect.delaySeconds"),
    Case("reconnect-longest-allowed", text(so("h-dmax", url="udp://h.example:5000",
                                              reconnect={"delaySeconds": 300, "maxDelaySeconds": 3600})),
         reason="Streaming", running=True, check=argv_safe),
]


def test_table_is_big_enough():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    rejected = sum(bool(c.reject) for c in CASES)
    assert rejected >= 20 and len(CASES) - rejected >= 20, "both verdicts must be well represented"


# --- the run -----------------------------------------------------------------------


@dataclass
class World:
    k: Kubectl
    good: GoodSet
    baseline: dict[str, Any]
    other: str
    port: int

    def sub(self, s: str) -> str:
        return s.replace("@OTHER@", self.other).replace("@NS@", self.k.ns).replace("'@PORT@'", str(self.port))


@pytest.fixture(scope="module")
def world(control_plane, operator, module_ns) -> World:
    k = Kubectl(control_plane, module_ns)
    other = f"{module_ns}-other"
    control_plane.kubectl("create", "namespace", other)
    control_plane.kubectl("apply", "-n", other, "-f", "-", input=text(
        si("elsewhere"), secret("elsewhere-url", url="udp://h.example:5000"),
        secret("elsewhere-pass", passphrase="elsewhere-passphrase-123")))
    good = GoodSet(k)
    baseline = good.create()
    port = k.status("si", "good")["port"]
    yield World(k, good, baseline, other, port)
    control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def _describe(k: Kubectl, kind: str, name: str) -> Callable[[], str]:
    def detail() -> str:
        got = k("get", kind, name, "-o", "yaml", check=False).stdout
        return f"{kind}/{name} as last seen:\n{got}"

    return detail


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile(world: World, case: Case):
    k = world.k
    kind, name = target(case)
    name = world.sub(name)
    if case.setup:
        k("apply", "-f", "-", input=world.sub(case.setup))
    try:
        if case.patch:
            result = k("patch", *case.patch, check=False)
        else:
            result = k("apply", "-f", "-", input=world.sub(case.yaml), check=False)
        if case.reject:
            _rejected(world, case, kind, name, result)
        else:
            assert result.returncode == 0, f"refused at apply, expected the operator to judge it:\n{result.stderr}"
            _judged(world, case, kind, name)
    finally:
        for doc in (case.yaml, case.setup):
            if doc:
                k("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=world.sub(doc), check=False)
    world.good.assert_unchanged(world.baseline, f"case {case.id}")


def _rejected(world: World, case: Case, kind: str, name: str, result: Any) -> None:
    assert result.returncode != 0, f"{case.id} was accepted:\n{result.stdout}"
    said = " ".join(result.stderr.split())
    expected = " ".join(world.sub(case.reject).split())
    assert expected in said, f"message not understandable/expected.\n  expected: {expected}\n  got: {said}"
    assert len(said) < 4000, "a wall of text is no message"
    if case.setup:
        # the object from the setup keeps its spec (flip refused)
        obj = world.k.get(kind, name)
        assert obj["spec"]["input"] == "good", obj["spec"]
    else:
        got = world.k("get", kind, name, "--ignore-not-found", "-o", "name", check=False).stdout
        assert not got.strip(), f"{name} exists although it was refused"


def _judged(world: World, case: Case, kind: str, name: str) -> None:
    k = world.k
    detail = _describe(k, kind, name)
    cond = poll(f"{kind}/{name}: Ready reason {case.reason}",
                lambda: (c := ready(k, kind, name)) and c["reason"] == case.reason and c, detail=detail)
    obj = k.get(kind, name)
    status = obj["status"]
    message = world.sub(case.message)
    assert message in cond["message"], f"condition message {cond['message']!r} lacks {message!r}"
    assert status["observedGeneration"] == obj["metadata"]["generation"] == cond["observedGeneration"]
    if case.phase:
        assert status["phase"] == case.phase
    assert SECRET_WORD not in str(status), f"a credential reached status: {status}"
    if case.event:
        events = poll(f"Event {case.reason} on {kind}/{name}",
                      lambda: [e for e in k.events(name) if e["reason"] == case.reason], detail=detail)
        for e in events:
            assert e["involvedObject"]["uid"] == obj["metadata"]["uid"]
            assert message in e["message"], e["message"]
            assert SECRET_WORD not in e["message"]
    mine = pods(k, f"streamdist.io/output={name}") if kind == "so" else []
    if case.running:
        if kind == "so":
            assert len(mine) == 1 and status["pod"] == mine[0]["metadata"]["name"], mine
    else:
        assert not mine, f"an invalid output got a pod: {[p['metadata']['name'] for p in mine]}"
        if kind == "si":
            assert not k.items("deployments", f"{MANAGED},streamdist.io/input={name}")
    if case.check:
        case.check(k, obj)


# --- names that collide with another object's children -------------------------------


COLLISIONS = [
    pytest.param(so("cam-ingest", input="cam", url="srt://:9200?mode=listener"), id="output-named-input-ingest-service"),
    pytest.param(so("cam", input="cam", url="srt://:9201?mode=listener"), id="output-named-input-service"),
    pytest.param(si("cam-ingest"), id="input-named-other-input-ingest-service"),
]


@pytest.mark.parametrize("doc", COLLISIONS)
def test_child_names_never_collide(control_plane, operator, ns, doc):
    """An SRT listener output gets a Service named after itself; an input owns Services
    `<input>` and `<input>-ingest`. A new object whose child would carry the name of a
    good input's child must not take that child over (it must end with a condition)."""
    k = Kubectl(control_plane, ns)
    good = GoodSet(k, "cam", ("c-udp", "c-listener", "c-keyed"))
    before = good.create()
    k("apply", "-f", "-", input=text(doc))
    name, short = doc["metadata"]["name"], ("so" if doc["kind"] == "StreamOutput" else "si")
    poll(f"{short}/{name} judged", lambda: k.status(short, name).get("phase") not in (None, "Pending", "Connecting"))
    time.sleep(2.0)
    try:
        good.assert_unchanged(before, f"applying {doc['kind']} {name}")
    except AssertionError as exc:
        raise AssertionError(
            f"{doc['kind']} {name} took over a Service of StreamInput cam (the operator server-side-applies "
            "every child with one field manager and force=true, so the last writer wins: the good input's "
            f"encoders or outputs are cut off; deleting {name} then garbage-collects the Service).\n{exc}"
        ) from None
