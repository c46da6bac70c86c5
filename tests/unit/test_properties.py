"""Property tests (hypothesis) of URL parsing, masking and rendering.

- parse() answers any text with a Destination or a URLError, never another exception;
  mask() never raises at all.
- Secrets placed anywhere a URL holds them (userinfo, RTMP stream key, passphrase /
  streamid / key / token query values, fragment) never survive masking, nor the one-line
  error FFmpeg's message becomes; from urlFrom the pod spec holds only
  $(STREAMDIST_DESTINATION) and a secretKeyRef.
- A URL never adds an FFmpeg option: it is exactly one argv element, the last, never
  starting with '-', and FFmpeg's own reading of an SRT/UDP URL (options after the first
  '?', first value wins) sees no option and no mode the operator did not see.
- Every rendered manifest passes the structural rules the API server enforces (DNS
  names, label values, port ranges and names, env names) and the `restricted` Pod
  Security Standard.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from streamdist import render, status, urls
from streamdist.models import ROUTER_PORTS, parse_input, parse_output
from streamdist.settings import Settings

SETTINGS = Settings()
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For tests that keep only what parse accepts: most hostile URLs are rejected, by design,
# so Hypothesis's "filters out a lot" check fails at random (1 in ~20 runs of CI).
PROFILE_ACCEPTED = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)

# --- strategies ------------------------------------------------------------------------

LOWER = string.ascii_lowercase + string.digits
label = st.text(LOWER, min_size=1, max_size=12)
dns_host = st.lists(label, min_size=1, max_size=3).map(".".join).filter(lambda h: not h.replace(".", "").isdigit())
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
host = st.one_of(dns_host, ipv4, ipv6)
port = st.integers(1, 65535)
# Secrets: uppercase-led and long, so they cannot occur by chance in a host or an app.
SECRET_ALPHABET = string.ascii_letters + string.digits + "-_.~"
secret = st.text(SECRET_ALPHABET, min_size=6, max_size=24).map(lambda s: f"ZQX{s}")
SECRET_QUERY_KEYS = ("passphrase", "streamid", "key", "token", "auth", "sig", "secret", "password")


@st.composite
def secret_url(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A valid destination URL with secrets where URLs hold them; returns (url, secrets)."""
    scheme = draw(st.sampled_from(["rtmp", "rtmps", "rtsp", "srt", "udp"]))
    h = draw(host)
    secrets: list[str] = []

    def s() -> str:
        value = draw(secret)
        secrets.append(value)
        return value

    if scheme in ("srt", "udp"):
        pairs = []
        if scheme == "srt":
            if draw(st.booleans()):
                pairs.append(f"passphrase={s()}PASS")  # libsrt: 10 to 79 characters
            if draw(st.booleans()):
                pairs.append(f"streamid={s()}")
            pairs += draw(st.lists(st.sampled_from(["latency=200000", "mode=caller", "pbkeylen=16"]), max_size=2,
                                   unique=True))
        else:
            pairs += draw(st.lists(st.sampled_from(["pkt_size=1316", "ttl=4"]), max_size=2, unique=True))
        query = "&".join(draw(st.permutations(pairs))) if pairs else ""
        url = f"{scheme}://{h}:{draw(port)}" + (f"?{query}" if query else "")
        return url, secrets
    userinfo = draw(st.sampled_from(["", "user", "only-password"]))
    auth = {"": "", "user": f"{draw(label)}:{s()}@", "only-password": f"{s()}@"}[userinfo]
    hostport = h + (f":{draw(port)}" if draw(st.booleans()) else "")
    path = "/" + draw(label) if scheme == "rtsp" else f"/{draw(label)}/{s()}"  # rtmp: /app/<stream key>
    url = f"{scheme}://{auth}{hostport}{path}"
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(SECRET_QUERY_KEYS), min_size=1, max_size=3, unique=True))
        url += "?" + "&".join(f"{k}={s()}" for k in keys)
    if draw(st.booleans()):
        url += f"#{s()}"
    return url, secrets


# Text that looks like a URL enough to get past the first checks, with the characters
# that matter to parsers (FFmpeg's and urllib's) over-represented.
URLISH = string.ascii_letters + string.digits + ":/?#[]@!&'()*+,;=%-._~ \t\n\x00\x7f" + "üé\u202e"
urlish = st.builds(
    lambda scheme, body: f"{scheme}://{body}",
    st.sampled_from(["srt", "udp", "rtmp", "rtmps", "rtsp", "SRT", "http"]),
    st.text(URLISH, max_size=60),
)
# Text FFmpeg reads options from: SRT/UDP URLs with query-ish tails in many shapes.
ffmpeg_tail = st.text("?#&=%+" + "ab", max_size=6)
ffmpeg_key = st.sampled_from(["mode", "localport", "latency", "passphrase", "reuse", "a", "%6Dode", "m%6Fde"])
ffmpeg_value = st.sampled_from(["caller", "listener", "1", "rendezvous", "", "%6Cistener", "%61"])
srt_udp_urls = st.one_of(
    st.builds(
        lambda scheme, h, p, parts: f"{scheme}://{h}:{p}" + "".join(parts),
        st.sampled_from(["srt", "udp"]),
        dns_host,
        port,
        st.lists(st.one_of(ffmpeg_tail, ffmpeg_key, ffmpeg_value), max_size=8),
    ),
    st.builds(
        lambda scheme, h, p, pairs: f"{scheme}://{h}:{p}?" + "&".join(f"{k}={v}" for k, v in pairs),
        st.sampled_from(["srt", "udp"]),
        dns_host,
        port,
        st.lists(st.tuples(ffmpeg_key, ffmpeg_value), min_size=1, max_size=3),
    ),
)


def parse_or_none(text: str) -> urls.Destination | None:
    try:
        return urls.parse(text)
    except urls.URLError as exc:
        assert str(exc), "a URLError must say what is wrong"
        return None


def parsed(text: str) -> urls.Destination:
    """What ``text`` parses to; an example that does not parse is dropped (assume)."""
    dest = parse_or_none(text)
    assume(dest is not None)
    assert dest is not None
    return dest


# --- parse and mask never crash --------------------------------------------------------


@PROFILE
@given(st.one_of(st.text(max_size=80), urlish, srt_udp_urls))
@example("srt://[::1")
@example("udp://h:99999999999999999999")
@example("rtmp://" + "a" * 10_000)
@example("udp://h\x00:5000")
def test_parse_rejects_with_urlerror_only_and_mask_never_raises(text: str) -> None:
    parse_or_none(text)  # any other exception fails the test
    masked = urls.mask(text)
    assert isinstance(masked, str)


@PROFILE_ACCEPTED
@given(st.one_of(urlish, srt_udp_urls, secret_url().map(lambda c: c[0])))
def test_accepted_urls_are_plain(text: str) -> None:
    """What parse accepts has no whitespace, control or shell character, and a real port."""
    dest = parsed(text)
    assert not re.search(r"[\x00-\x20\x7f\\\"'`$;|<>]", text)
    assert 1 <= dest.port <= 65535
    assert dest.scheme in urls.SCHEMES


# --- secrets never survive masking -------------------------------------------------------


@PROFILE
@given(secret_url())
@example(("rtmp://u:ZQXpw1234@live.example/app/ZQXkey1234?token=ZQXtok1234#ZQXfrag1234",
          ["ZQXpw1234", "ZQXkey1234", "ZQXtok1234", "ZQXfrag1234"]))
@example(("srt://dec.example:9000?passphrase=ZQXpass1234&streamid=ZQXsid1234",
          ["ZQXpass1234", "ZQXsid1234"]))
def test_masked_text_never_holds_a_secret(case: tuple[str, list[str]]) -> None:
    url, secrets = case
    dest = urls.parse(url)  # the generator only builds valid URLs
    error = status.one_line_error(f"[tcp @ 0x55d0] Connection to {url} failed\n{url}: Input/output error")
    for value in secrets:
        assert value not in dest.masked, (url, dest.masked)
        assert value not in urls.mask(url), (url, urls.mask(url))
        assert value not in error, (url, error)


def _output(name: str, input_name: str, **spec: Any) -> Any:
    return parse_output({"metadata": {"name": name, "namespace": "live", "uid": "u-1", "generation": 1},
                         "spec": {"input": input_name, **spec}})


@PROFILE
@given(secret_url())
def test_url_from_secret_reaches_the_pod_as_an_env_reference_only(case: tuple[str, list[str]]) -> None:
    url, secrets = case
    out = _output("keyed", "cam", urlFrom={"secretKeyRef": {"name": "dest", "key": "url"}})
    docs = render.render_output(out, render.OutputPlan(destination=urls.parse(url), secret_version="7"), SETTINGS)
    dumped = json.dumps(docs)
    masked = urls.mask(url)
    # The URL itself only where it holds nothing to mask: then its masked form, shown
    # in status.destination too, is the whole of it.
    assert url not in dumped.replace(json.dumps(masked)[1:-1], "") or url == masked
    for value in secrets:
        assert value not in dumped
    container = docs[0]["spec"]["containers"][0]
    assert container["args"][-1] == f"$({render.DESTINATION_ENV})"
    assert container["args"].count(f"$({render.DESTINATION_ENV})") == 1
    assert container["env"][2:] == [
        {"name": render.DESTINATION_ENV, "valueFrom": {"secretKeyRef": {"name": "dest", "key": "url"}}},
        {"name": render.MASKED_DESTINATION_ENV, "value": masked},
        {"name": render.INPUT_ADDRESS_ENV, "value": "cam.live.svc:8554"},
        {"name": render.TELEMETRY_ENV, "value": "0.0.0.0:9998"},
    ]
    assert [e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"][:2]] == ["cam-credentials"] * 2


# --- a URL never adds an FFmpeg option ----------------------------------------------------

BENIGN = {
    ("srt", False): "srt://b.example:9000",
    ("srt", True): "srt://:9000?mode=listener",
    ("udp", False): "udp://b.example:5000",
    ("rtmp", False): "rtmp://b.example/app/k",
    ("rtmps", False): "rtmps://b.example/app/k",
    ("rtsp", False): "rtsp://b.example/p",
}


def _args(url: str) -> list[str]:
    out = _output("o", "cam", url=url)
    docs = render.render_output(out, render.OutputPlan(destination=urls.parse(url)), SETTINGS)
    return docs[0]["spec"]["containers"][0]["args"]  # type: ignore[no-any-return]


@PROFILE_ACCEPTED
@given(st.one_of(urlish, srt_udp_urls, secret_url().map(lambda c: c[0])))
@example("rtmp://h.example/app/key?-f=null")
@example("rtsp://h.example/x?-rtsp_flags=listen")
def test_destination_is_one_last_argv_element(text: str) -> None:
    dest = parsed(text)
    args = _args(text)
    assert args[-1] == text
    assert not args[-1].startswith("-")
    assert text not in args[:-1]
    # Everything before it is what a benign URL of the same kind renders: the user's text
    # changes nothing else on the command line.
    assert args[:-1] == _args(BENIGN[(dest.scheme, dest.listener)])[:-1]


def ffmpeg_options(url: str) -> list[tuple[str, str]]:
    """How FFmpeg's srt and udp protocols read options: av_find_info_tag() over the text
    after the first '?' (libsrt.c/udp.c: strchr(uri, '?')), '&'-separated, no
    percent-decoding, '+' as space, and the first occurrence of a tag wins."""
    p = url.find("?")
    if p < 0:
        return []
    pairs = []
    for part in url[p + 1:].split("&"):
        key, _, value = part.partition("=")
        pairs.append((key, value.replace("+", " ")))
    return pairs


@PROFILE_ACCEPTED
@given(srt_udp_urls)
@example("srt://h.example:9000#?mode=listener&localport=1")
@example("srt://h.example:9000?mode=caller&mode=listener")
@example("udp://h.example:5000?#")
@example("srt://h.example:9000?%6Dode=listener")
@example("srt://h.example:9000?mode=%6Cistener")
def test_ffmpeg_reads_no_option_and_no_mode_the_operator_did_not_see(text: str) -> None:
    dest = parsed(text)
    options = ffmpeg_options(text)
    read = {key for key, _ in options if key}
    unknown = read - urls.ALLOWED_QUERY[dest.scheme]
    assert not unknown, (
        f"{text!r}: FFmpeg reads option(s) {sorted(unknown)} the operator never checked "
        f"(urllib saw query {text.partition('?')[2]!r} differently: fragment or encoding)"
    )
    if dest.scheme == "srt":
        first_mode = next((v for k, v in options if k == "mode"), "caller")
        assert first_mode == dest.mode, (
            f"{text!r}: FFmpeg runs SRT mode {first_mode!r} but the operator renders it as {dest.mode!r} "
            "(Service, endpoint and timeouts follow the operator's reading)"
        )


# --- every rendered manifest is well-formed ------------------------------------------------

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])*$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def dns1035(max_size: int) -> st.SearchStrategy[str]:
    return st.builds(lambda a, b: (a + b).rstrip("-") or a, st.sampled_from(string.ascii_lowercase),
                     st.text(string.ascii_lowercase + string.digits + "-", max_size=max_size - 1)).map(
        lambda s: s if not s.endswith("-") else s.rstrip("-"))


input_specs = st.fixed_dictionaries(
    {},
    optional={
        "protocol": st.sampled_from(["udp", "srt", "rtmp", "rtsp"]),
        "port": st.integers(1024, 65535).filter(lambda p: p not in ROUTER_PORTS),
        "service": st.fixed_dictionaries({"type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"])}),
        "maxOutputs": st.integers(1, 200),
        "allowedSources": st.lists(st.sampled_from(["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]), max_size=3),
    },
)
listen_port = st.integers(1024, 65535)  # a listener runs as non-root
output_urls = st.one_of(
    secret_url().map(lambda c: c[0]),
    st.builds(lambda p, extra: f"srt://:{p}?mode=listener{extra}", listen_port,
              st.sampled_from(["", "&latency=200000"])),
    st.builds(lambda h, p: f"srt://{h}:{p}?mode=listener", ipv4, listen_port),
)


def _label_ok(key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    assert len(name) <= 63 and LABEL_NAME.match(name), key
    if prefix:
        assert len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix), key
    assert len(value) <= 63 and LABEL_VALUE.match(value), f"label {key}={value!r}"


def check_manifest(doc: dict[str, Any]) -> None:
    meta = doc["metadata"]
    name = meta["name"]
    if doc["kind"] == "Service":
        assert len(name) <= 63 and DNS1035_LABEL.match(name), f"Service name {name!r}"
    else:
        assert len(name) <= 253 and DNS1123_SUBDOMAIN.match(name), f"{doc['kind']} name {name!r}"
    for key, value in (meta.get("labels") or {}).items():
        _label_ok(key, value)
    owners = meta["ownerReferences"]
    assert len(owners) == 1 and owners[0]["controller"] is True
    if doc["kind"] == "Service":
        ports = doc["spec"]["ports"]
        assert len({p["name"] for p in ports}) == len(ports)
        for p in ports:
            assert 1 <= p["port"] <= 65535 and 1 <= p["targetPort"] <= 65535
            assert len(p["name"]) <= 15 and PORT_NAME.match(p["name"])
            assert p["protocol"] in ("TCP", "UDP")
        for key, value in doc["spec"]["selector"].items():
            _label_ok(key, value)
    if doc["kind"] == "NetworkPolicy":
        for rule in doc["spec"]["ingress"]:
            assert rule["ports"] and all(1 <= p["port"] <= 65535 and p["protocol"] in ("TCP", "UDP")
                                         for p in rule["ports"])
    if doc["kind"] == "Secret":
        assert doc["type"] == "Opaque" and all(ENV_NAME.match(k) for k in doc["stringData"])
    if doc["kind"] == "ConfigMap":
        for key in doc["data"]:
            assert CONFIG_KEY.match(key)
        yaml.safe_load(doc["data"]["mediamtx.yml"])
    pod = doc["spec"]["template"] if doc["kind"] == "Deployment" else doc if doc["kind"] == "Pod" else None
    if pod is None:
        return
    if doc["kind"] == "Deployment":
        labels = pod["metadata"]["labels"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for key, value in labels.items():
            _label_ok(key, value)
    spec = pod["spec"]
    sec = spec["securityContext"]
    assert sec["runAsNonRoot"] is True and sec["seccompProfile"]["type"] in ("RuntimeDefault", "Localhost")
    assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
    for volume in spec.get("volumes") or []:
        assert set(volume) - {"name"} <= {"configMap", "emptyDir", "secret", "projected", "downwardAPI"}
    for c in spec["containers"]:
        assert DNS1123_LABEL.match(c["name"]) and len(c["name"]) <= 63
        csec = c["securityContext"]
        assert csec["allowPrivilegeEscalation"] is False
        assert csec["capabilities"]["drop"] == ["ALL"] and not csec["capabilities"].get("add")
        assert not csec.get("privileged")
        names = [p["name"] for p in c.get("ports") or []]
        assert len(set(names)) == len(names)
        for p in c.get("ports") or []:
            assert 1 <= p["containerPort"] <= 65535 and "hostPort" not in p
            assert len(p["name"]) <= 15 and PORT_NAME.match(p["name"]) and re.search("[a-z]", p["name"])
        for env in c.get("env") or []:
            assert ENV_NAME.match(env["name"])
            # a plain value never carries a destination, except its masked form for the entrypoint
            if env["name"] != render.MASKED_DESTINATION_ENV:
                assert "value" not in env or not env["value"].startswith(("srt://", "rtmp", "rtsp://", "udp://"))


@PROFILE
@given(dns1035(56), input_specs, st.booleans(), st.integers(1024, 65535))
@example("i" + "n" * 55, {"protocol": "srt"}, True, 65535)
def test_rendered_input_manifests_are_well_formed(name: str, spec: dict[str, Any], passphrase: bool,
                                                  allocated: int) -> None:
    assume(len(name) <= 56)
    if passphrase and spec.get("protocol") == "srt":
        spec = {**spec, "passphraseSecretRef": {"name": "pp", "key": "passphrase"}}
    if spec.get("protocol", "udp") != "udp":
        spec = {**spec, "publishSecretRef": {"name": "pub", "key": "credential"}}
    inp = parse_input({"metadata": {"name": name, "namespace": "live", "uid": "u-2", "generation": 1}, "spec": spec})
    docs = render.render_input(inp, spec.get("port", allocated), SETTINGS)
    assert {d["kind"] for d in docs} == {"Secret", "ConfigMap", "NetworkPolicy", "Deployment", "Service"}
    for doc in docs:
        check_manifest(doc)


@PROFILE
@given(dns1035(54), dns1035(56), output_urls, st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]),
       st.integers(0, 10**6))
@example("o" + "x" * 53, "i" + "n" * 55, "srt://:65535?mode=listener", "NodePort", 10**6)
def test_rendered_output_manifests_are_well_formed(name: str, input_name: str, url: str, service: str,
                                                   replacement: int) -> None:
    assume(len(name) <= 54 and len(input_name) <= 56)
    out = _output(name, input_name, url=url, service={"type": service})
    plan = render.OutputPlan(destination=urls.parse(url), replacement=replacement)
    docs = render.render_output(out, plan, SETTINGS)
    assert docs[0]["kind"] == "Pod"
    assert [d["kind"] for d in docs[1:]] == (["Service"] if plan.destination.listener else [])
    for doc in docs:
        check_manifest(doc)
    assert docs[0]["metadata"]["labels"]["streamdist.io/output"] == name
