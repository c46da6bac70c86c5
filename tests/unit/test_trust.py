"""Trust boundaries, as rendered and decided without a cluster: who the router config lets
in (authInternalUsers), the NetworkPolicy per input, the credentials Secret, the Secret
opt-in rule and the destinations that are routers."""

import dataclasses

import pytest
import yaml

from streamdist import credentials, destinations, render, secret_policy
from streamdist.models import parse_input
from streamdist.settings import Settings

OPERATOR = Settings(operator_namespace="streamdist", operator_labels=(("app.kubernetes.io/component", "operator"),))
PUBLISH = {"name": "pub", "key": "credential"}


def _input(spec, name="cam", uid="u-1"):
    return parse_input({"metadata": {"name": name, "namespace": "live", "uid": uid}, "spec": spec})


def _config(inp, plan=None):
    return yaml.safe_load(render.mediamtx_config(inp, 20001, plan))


def _users(inp, plan=None):
    return {u["user"]: u for u in _config(inp, plan)["authInternalUsers"]}


# --- credentials -----------------------------------------------------------------


def test_derived_credentials_are_per_input_and_stable():
    a = credentials.for_input("k" * 64, "live", "cam", "u-1")
    assert a == credentials.for_input("k" * 64, "live", "cam", "u-1"), "a restart derives the same values"
    others = [credentials.for_input("k" * 64, "live", "cam", "u-2"),  # re-created input
              credentials.for_input("k" * 64, "other", "cam", "u-1"),  # same name, other namespace
              credentials.for_input("j" * 64, "live", "cam", "u-1")]  # other installation
    for other in others:
        assert {a.api_password, a.read_password, a.srt_read_passphrase}.isdisjoint(
            {other.api_password, other.read_password, other.srt_read_passphrase})
    assert len({a.api_password, a.read_password, a.srt_read_passphrase}) == 3
    assert len(a.api_password) == 32 and int(a.api_password, 16) >= 0


def test_hashed_is_mediamtx_sha256_form():
    # as MediaMTX documents making one: echo -n testuser | openssl dgst -binary -sha256 | openssl base64
    assert credentials.hashed("testuser") == "sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ="


@pytest.mark.parametrize(("value", "ok"), [
    ("enc:longenough", True), ("a:12345678", True), ("enc-1.x_y:pa.ss-w_rd9", True), ("enc:longenough\n", True),
    ("enc:short", False), ("nouser", False), (":password1", False), ("enc:pass word1", False),
    ("enc:pass@word1", False), ("e:n:c:password1", False), ("enc:" + "p" * 129, False), ("u" * 65 + ":password1", False),
])
def test_publisher_credential_rule(value, ok):
    if ok:
        assert credentials.parse_publisher(value).user == value.split(":")[0]
        return
    with pytest.raises(credentials.CredentialError) as err:
        credentials.parse_publisher(value)
    assert value.strip() not in str(err.value) and "spec.publishSecretRef" in str(err.value)


@pytest.mark.parametrize(("length", "ok"), [(9, False), (10, True), (79, True), (80, False)])
def test_srt_passphrase_length(length, ok):
    if ok:
        assert credentials.check_srt_passphrase("p" * length)
    else:
        with pytest.raises(credentials.CredentialError, match="10 to 79"):
            credentials.check_srt_passphrase("p" * length)


# --- the router's users ------------------------------------------------------------


def test_operator_and_readers_have_hashed_credentials_and_nothing_else():
    inp = _input({"protocol": "udp"})
    plan = render.RouterPlan.for_render(inp)
    users = _users(inp, plan)
    assert set(users) == {"streamdist", "reader"}, "no `any` user: nobody gets in without a credential"
    assert users["streamdist"]["pass"] == credentials.hashed(plan.credentials.api_password)
    assert users["streamdist"]["permissions"] == [{"action": "api"}, {"action": "metrics"}]
    assert users["reader"]["pass"] == credentials.hashed(plan.credentials.read_password)
    assert users["reader"]["permissions"] == [{"action": "read", "path": "cam"}]
    text = render.mediamtx_config(inp, 20001, plan)
    assert plan.credentials.api_password not in text and plan.credentials.read_password not in text


@pytest.mark.parametrize("protocol", ["srt", "rtmp", "rtsp"])
def test_publisher_may_publish_to_its_ingest_only_from_allowed_sources(protocol):
    inp = _input({"protocol": protocol, "publishSecretRef": PUBLISH, "allowedSources": ["198.51.100.0/24"]})
    plan = render.RouterPlan(render.RouterPlan.for_render(inp).credentials, credentials.Publisher("enc", "pw-12345678"))
    config = _config(inp, plan)
    publisher = config["authInternalUsers"][render.PUBLISHER_INDEX]
    assert publisher["permissions"] == [{"action": "publish", "path": "cam"}]
    assert publisher["ips"] == ["198.51.100.0/24"]
    assert publisher["user"].startswith("sha256:") and "enc" not in render.mediamtx_config(inp, 20001, plan)
    assert "pw-12345678" not in yaml.safe_dump(render.render_input(inp, 20001, Settings(), plan)[1:])
    assert config["paths"]["cam"]["overridePublisher"] is False


def test_with_a_backup_the_readers_path_takes_a_publisher_from_the_pod_only():
    inp = _input({"protocol": "udp", "publishSecretRef": PUBLISH, "backup": {"protocol": "srt", "port": 21001}})
    users = _config(inp)["authInternalUsers"]
    switch = users[-1]
    assert switch["user"] == "any" and switch["ips"] == ["127.0.0.1/32", "::1/128"]
    assert {"action": "publish", "path": "cam"} in switch["permissions"]
    publisher = users[render.PUBLISHER_INDEX]
    assert publisher["permissions"] == [{"action": "publish", "path": "cam-backup"}], "udp primary: no publisher"
    network = [u for u in users if u["ips"] != render.LOOPBACK_NETS and u is not switch]
    assert all({"action": "publish", "path": "cam"} not in u["permissions"] for u in network)


def test_udp_source_filtered_by_mediamtx_when_one_address_is_allowed():
    one = _config(_input({"protocol": "udp", "allowedSources": ["192.0.2.7/32"]}))
    assert one["paths"]["cam"]["source"] == "udp+mpegts://0.0.0.0:20001?source=192.0.2.7"
    many = _config(_input({"protocol": "udp", "allowedSources": ["192.0.2.0/24"]}))
    assert many["paths"]["cam"]["source"] == "udp+mpegts://0.0.0.0:20001"


def test_publisher_secret_is_required_and_cidrs_checked():
    for protocol in ("srt", "rtmp", "rtsp"):
        with pytest.raises(ValueError, match="publishSecretRef is required"):
            _input({"protocol": protocol})
    with pytest.raises(ValueError, match="publishSecretRef is required"):
        _input({"protocol": "udp", "backup": {"protocol": "rtmp", "port": 21000}})
    with pytest.raises(ValueError, match="needs an srt, rtmp or rtsp ingest"):
        _input({"protocol": "udp", "publishSecretRef": PUBLISH})
    for bad in ("10.0.0.1", "10.0.0.1/8", "0251.0.0.0/8", "x/24", "10.0.0.0/33"):
        with pytest.raises(ValueError, match="allowedSources must list CIDRs"):
            _input({"protocol": "udp", "allowedSources": [bad]})


# --- the credentials Secret and the pods -----------------------------------------


def test_credentials_secret_holds_what_pods_and_router_read():
    inp = _input({"protocol": "srt", "publishSecretRef": PUBLISH, "passphraseSecretRef": {"name": "p", "key": "k"}})
    plan = render.RouterPlan(credentials.for_input("k" * 64, "live", "cam", "u-1"),
                             credentials.Publisher("enc", "pw-12345678"), "srt-passphrase-1")
    docs = render.render_input(inp, 20001, Settings(), plan)
    secret = render.find(docs, "Secret")
    assert secret["metadata"]["name"] == "cam-credentials" and secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {"readUser", "readPassword", "srtReadPassphrase", "publishUser",
                                         "publishPassword", "srtPassphrase"}
    assert plan.credentials.api_password not in yaml.safe_dump(docs), "the API password stays with the operator"
    template = render.find(docs, "Deployment")["spec"]["template"]
    rotated = render.RouterPlan(plan.credentials, credentials.Publisher("enc", "pw-rotated-1"), "srt-passphrase-1")
    again = render.find(render.render_input(inp, 20001, Settings(), rotated), "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"] != again["metadata"]["annotations"], "a rotation restarts the router"


def test_router_readiness_does_not_need_the_api_credential():
    docs = render.render_input(_input({"protocol": "udp"}), 20001, Settings())
    probe = render.find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["tcpSocket"] == {"port": "api"} and "httpGet" not in probe


# --- NetworkPolicy -------------------------------------------------------------------


def _policy(spec, settings=OPERATOR):
    return render.find(render.render_input(_input(spec), 20001, settings), "NetworkPolicy")["spec"]


def test_policy_admits_own_outputs_to_rtsp_and_the_operator_to_api():
    spec = _policy({"protocol": "udp"})
    assert spec["podSelector"]["matchLabels"] == render.input_labels("cam")
    readers, operator, ingest = spec["ingress"]
    assert readers["from"] == [{"podSelector": {"matchLabels": render.output_labels_of("cam")}}]
    assert readers["ports"] == [{"port": 8554, "protocol": "TCP"}]
    assert operator["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "streamdist"}},
                                 "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}]
    # the control API, the metrics and (on by default) the confidence monitor
    assert operator["ports"] == [{"port": 9997, "protocol": "TCP"}, {"port": 9998, "protocol": "TCP"},
                                 {"port": 9995, "protocol": "TCP"}]  # fmt: skip
    assert ingest == {"ports": [{"port": 20001, "protocol": "UDP"}]}, "no allowedSources: everyone may send"
    unmonitored = _policy({"protocol": "udp"}, dataclasses.replace(OPERATOR, confidence_monitor=False))
    assert unmonitored["ingress"][1]["ports"] == [{"port": 9997, "protocol": "TCP"}, {"port": 9998, "protocol": "TCP"}]


def test_policy_ingest_from_allowed_sources_and_rtsp_publishers_share_8554():
    spec = _policy({"protocol": "rtsp", "publishSecretRef": PUBLISH, "allowedSources": ["192.0.2.0/24", "2001:db8::/32"]})
    ingest = spec["ingress"][-1]
    assert ingest["from"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/32"}}]
    assert ingest["ports"] == [{"port": 8554, "protocol": "TCP"}]


def test_policy_without_an_operator_pod_has_no_api_rule():
    spec = _policy({"protocol": "udp"}, Settings())
    assert all({"port": 9997, "protocol": "TCP"} not in rule["ports"] for rule in spec["ingress"])


def test_allowed_sources_keep_their_address_through_a_node_port():
    docs = render.render_input(_input({"protocol": "udp", "allowedSources": ["192.0.2.0/24"],
                                       "service": {"type": "NodePort"}}), 20001, Settings())
    assert render.input_services(docs)[1]["spec"]["externalTrafficPolicy"] == "Local"
    plain = render.render_input(_input({"protocol": "udp", "service": {"type": "NodePort"}}), 20001, Settings())
    assert "externalTrafficPolicy" not in render.input_services(plain)[1]["spec"]


# --- Secret opt-in -------------------------------------------------------------------


@pytest.mark.parametrize(("meta", "usage", "reason"), [
    (None, "destination", "SecretNotFound"),
    (secret_policy.SecretMeta({}), "destination", "SecretNotAllowed"),
    (secret_policy.SecretMeta({"streamdist.io/secret-usage": "publish"}), "destination", "SecretNotAllowed"),
    (secret_policy.SecretMeta({"streamdist.io/secret-usage": "destination"}, "kubernetes.io/tls"), "destination",
     "SecretNotAllowed"),
    (secret_policy.SecretMeta({"streamdist.io/secret-usage": "destination"}), "destination", None),
    (secret_policy.SecretMeta({"streamdist.io/secret-usage": "passphrase"}), "passphrase", None),
    (secret_policy.SecretMeta({"streamdist.io/secret-usage": "publish"}), "publish", None),
    (secret_policy.SecretMeta({"streamdist.io/secret-usage": "Publish"}), "publish", "SecretNotAllowed"),
])
def test_secret_must_opt_in_to_its_use(meta, usage, reason):
    got = secret_policy.refusal(meta, usage)
    assert (got.reason if got else None) == reason
    if got and reason == "SecretNotAllowed":
        assert f"streamdist.io/secret-usage={usage}" in got.message and secret_policy.FIELDS[usage] in got.message


# --- destinations that are routers ---------------------------------------------------

INPUTS = {("live", "cam"), ("other", "feed")}


@pytest.mark.parametrize(("host", "forbidden"), [
    ("cam", True), ("cam-ingest", True), ("CAM", True), ("cam.live", True), ("cam.live.svc", True),
    ("cam.live.svc.cluster.local", True), ("cam.live.svc.cluster.local.", True), ("feed.other", True),
    ("feed-ingest.other.svc", True), ("feed-ingest.other.svc.cluster.local.", True), ("10.96.0.10", True),
    ("feed", False), ("cam.other", False), ("cam.live.svc.example.com", False), ("cam.live.pod", False),
    ("camera", False), ("cam-ingestx", False), ("live.example", False), ("10.96.0.11", False),
    ("cam.example", False),
])
def test_router_destinations(host, forbidden):
    assert destinations.is_router(host, "live", INPUTS, {"10.96.0.10"}) is forbidden


@pytest.mark.parametrize(("primary", "backup", "paths"), [
    ("udp", {"protocol": "srt", "port": 21001}, ["CAM-BACKUP"]),
    ("srt", {"protocol": "udp", "port": 21001}, ["CAM-PRIMARY"]),
    ("srt", {"protocol": "srt"}, ["CAM-PRIMARY", "CAM-BACKUP"]),
])
def test_the_srt_passphrase_goes_only_to_srt_paths(primary, backup, paths):
    """MediaMTX refuses srtPublishPassphrase on a path fed by UDP: never inherited."""
    inp = _input({"protocol": primary, "backup": backup, "publishSecretRef": PUBLISH,
                  "passphraseSecretRef": {"name": "p", "key": "k"}})
    env = render.find(render.render_input(inp, 20001, Settings()), "Deployment")["spec"]["template"]["spec"]
    names = [e["name"] for e in env["containers"][0]["env"]]
    assert [n for n in names if n.endswith("_SRTPUBLISHPASSPHRASE")] == [f"MTX_PATHS_{p}_SRTPUBLISHPASSPHRASE" for p in paths]
    assert "pathDefaults" not in yaml.safe_dump(_config(inp))
