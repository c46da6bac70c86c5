"""URL parsing and masking: every destination form, and no secret in the masked text."""

import pytest

from streamdist import urls

CANARY = "CANARYsecret0042"


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "mode", "protocol"),
    [
        ("srt://dec.example:9000", "srt", "dec.example", 9000, "caller", "srt-caller"),
        ("srt://dec.example:9000?mode=caller&latency=200000", "srt", "dec.example", 9000, "caller", "srt-caller"),
        ("srt://0.0.0.0:9100?mode=listener", "srt", "0.0.0.0", 9100, "listener", "srt-listener"),
        ("srt://:9100?mode=listener", "srt", "", 9100, "listener", "srt-listener"),
        ("rtmp://live.example/app/key", "rtmp", "live.example", 1935, None, "rtmp"),
        ("rtmps://a.rtmp.youtube.com:443/live2/key", "rtmps", "a.rtmp.youtube.com", 443, None, "rtmps"),
        ("rtmps://live.example/app/key", "rtmps", "live.example", 443, None, "rtmps"),
        ("udp://239.1.1.1:5000?pkt_size=1316", "udp", "239.1.1.1", 5000, None, "udp"),
        ("rtsp://user:pw@cam.example/stream", "rtsp", "cam.example", 554, None, "rtsp"),
        ("rtsp://[::1]:8554/program", "rtsp", "::1", 8554, None, "rtsp"),
        ("rtmp://Live.Example/app/key", "rtmp", "live.example", 1935, None, "rtmp"),
    ],
)
def test_parse_every_form(url, scheme, host, port, mode, protocol):
    dest = urls.parse(url)
    assert (dest.scheme, dest.host, dest.port, dest.mode, dest.protocol) == (scheme, host, port, mode, protocol)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/x", "scheme must be one of"),
        ("RTMP://live.example/app/key", "scheme must be one of"),
        ("ftp://example.com", "scheme must be one of"),
        ("example.com:1935", "scheme must be one of"),
        ("-f://x", "scheme must be one of"),
        ("srt://dec.example:9000?mode=rendezvous", "mode must be caller or listener"),
        ("srt://dec.example", "needs a port"),
        ("udp://239.1.1.1", "needs a port"),
        ("udp://host:70000", "malformed"),
        ("rtmp:///app/key", "needs a host"),
        ("srt://dec.example:9000?localport=1", "unsupported query parameter"),
        ("udp://h.example:5000?reuse=1&localaddr=1.2.3.4", "unsupported query parameter"),
        ("rtmp://h.example/app/key; rm -rf /", "shell characters"),
        ("rtmp://h.example/app/$(KEY)", "shell characters"),
        ("rtmp://h.example/app/key\nx", "control"),
        ("rtmp://h.example/app/k\x00", "control"),
        ("rtmp://b\u00fccher.example/app/key", "punycode"),
        ("rtmp://" + "a" * 300 + ".example/app", "not a valid DNS name"),
        ("srt://user:pw@h.example:9000", "cannot carry user credentials"),
    ],
)
def test_parse_rejects_with_message(url, message):
    with pytest.raises(urls.URLError, match=message):
        urls.parse(url)


@pytest.mark.parametrize(
    "url",
    [
        f"rtmp://live.example/app/{CANARY}",
        f"rtmps://live.example:443/live2/{CANARY}",
        f"rtmp://live.example/app/{CANARY}?backup=1",
        f"rtmp://user:{CANARY}@live.example/app/name",
        f"rtmp://{CANARY}:pw@live.example/app/name",
        f"rtsp://user:{CANARY}@cam.example:554/stream",
        f"srt://dec.example:9000?passphrase={CANARY}",
        f"srt://dec.example:9000?mode=caller&streamid={CANARY}&latency=1",
        f"rtmp://live.example/app?key={CANARY}",
        f"rtsp://cam.example/stream?token={CANARY}",
        f"rtmp://live.example/app/name?{CANARY}",
        f"udp://h.example:5000#{CANARY}",
    ],
)
def test_mask_hides_canary(url):
    assert CANARY not in urls.mask(url)


def test_mask_keeps_what_a_person_needs():
    assert urls.mask("rtmps://a.rtmp.youtube.com:443/live2/abcd") == "rtmps://a.rtmp.youtube.com:443/live2/***"
    assert urls.mask("srt://h:9000?mode=caller&passphrase=x&latency=5") == "srt://h:9000?mode=caller&passphrase=***&latency=5"
    assert urls.mask("rtsp://u:p@cam:554/s") == "rtsp://***@cam:554/s"
    assert urls.mask("udp://239.1.1.1:5000?pkt_size=1316") == "udp://239.1.1.1:5000?pkt_size=1316"


def test_mask_never_raises():
    assert urls.mask("rtmp://[bad") == urls.MASK
