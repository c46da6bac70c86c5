"""The MediaMTX image clusters use is the release the media tests build."""

from pathlib import Path

from streamdist.settings import MEDIAMTX_IMAGE, from_env

ROOT = Path(__file__).resolve().parents[2]


def _pins():
    pins = {}
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            pins[k.strip()] = v.strip().strip('"')
    return pins


def test_mediamtx_image_matches_pinned_build():
    pins = _pins()
    assert pins["MEDIAMTX_IMAGE"] == MEDIAMTX_IMAGE
    assert MEDIAMTX_IMAGE.endswith(":" + pins["MEDIAMTX_VERSION"].lstrip("v"))


def test_settings_from_env():
    s = from_env({"STREAMDIST_PORT_RANGE": "30000-30009", "STREAMDIST_NAMESPACES": "a, b"})
    assert s.port_range == range(30000, 30010)
    assert s.namespaces == ("a", "b")
