"""Who may see an input's thumbnail, on the real API server with the operator running.

The operator's endpoint takes a token only for its audience (TokenReview: a token for
the API server is refused) and only if its user may get ``streaminputs/thumbnail`` of
that very input (SubjectAccessReview); the control room checks the viewer's own right
before it asks the operator with the page's token. KWOK plays the router pods here, so
an allowed request ends at the router (no picture exists): the node suite fetches real
ones through the same path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamdist_dev.controlplane import ControlPlane
from streamdist_dev.kubectl import Kubectl
from streamdist_dev.operator import OperatorProcess
from streamdist_dev.ui import (
    READ_RULES,
    THUMBNAIL_RULES,
    UiProcess,
    apply_all,
    audience_token,
    bearer_get,
    page_kubeconfig,
    service_account,
    stream_input,
)

pytestmark = pytest.mark.timeout(300)
# What the operator answers once authorization passed, where KWOK plays the router: the
# monitor (on by default) is asked at the router's Service, whose address leads nowhere
# (503), or, where this host's gateway answers HTTP for any address, what it was answered
# (404, 502); with the monitor off, 404. The page relays the operator's message with 404,
# or 503 for anything else. Never 401 or 403.
PAST_AUTHORIZATION = {
    (404, "confidence monitor is off"), (404, "no keyframe decoded yet"),
    (502, "the confidence monitor answered HTTP"), (503, "cannot be reached"),
}  # fmt: skip


def _past_authorization(status: int, body: str) -> bool:
    return status in (404, 502, 503) and any(why in body for _, why in PAST_AUTHORIZATION)


def _with_router(k: Kubectl, *names: str) -> None:
    apply_all(k, *(stream_input(n) for n in names))
    for name in names:
        k.wait(f"{name}'s router Service", lambda n=name: n in {s["metadata"]["name"] for s in k.items("services")}, 60)


def _tokens(k: Kubectl, tmp: Path, name: str, rules: list[dict]) -> tuple[str, str]:
    """(an API-server token, a token for the operator's audience) of one ServiceAccount."""
    api = service_account(k, k.ns, name, rules)
    return api, audience_token(k, k.ns, name, tmp / f"{name}.token").read_text()


def test_the_operator_serves_thumbnails_to_its_audience_and_rbac_only(
    k: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    _with_router(k, "cam", "other")
    url = f"http://127.0.0.1:{operator.thumbnail_port}/v1/thumbnails/{k.ns}/" + "{}.jpg"
    cam_only = [{**THUMBNAIL_RULES[0], "resourceNames": ["cam"]}]
    api_token, viewer = _tokens(k, tmp_path, "viewer", cam_only)
    _, nobody = _tokens(k, tmp_path, "nobody", [])

    assert bearer_get(url.format("cam"))[0] == 401, "no token"
    assert bearer_get(url.format("cam"), "not-a-token")[0] == 401, "a token the API server does not know"
    assert bearer_get(url.format("cam"), api_token)[0] == 401, "a token for the API server, not for the operator"
    assert bearer_get(url.format("cam"), nobody)[0] == 403, "a ServiceAccount without the right"
    assert bearer_get(url.format("other"), viewer)[0] == 403, "the right on another input only"
    got = bearer_get(url.format("cam"), viewer)
    assert _past_authorization(*got), got
    assert bearer_get(url.format("absent"), viewer)[0] == 403, "no right on a name never granted"


def test_the_control_room_checks_the_viewer_before_asking_the_operator(
    control_plane: ControlPlane, k: Kubectl, operator: OperatorProcess, tmp_path: Path
) -> None:
    _with_router(k, "cam")
    page_kc = page_kubeconfig(control_plane, tmp_path)
    page_token = audience_token(control_plane.kubectl, "streamdist-ui", "page", tmp_path / "page.token")
    reader = service_account(k, k.ns, "reader", READ_RULES)
    watcher = service_account(k, k.ns, "watcher", READ_RULES + THUMBNAIL_RULES)
    args = ("--operator-url", f"http://127.0.0.1:{operator.thumbnail_port}", "--operator-token-file", str(page_token))
    path = f"/api/namespaces/{k.ns}/streaminputs/cam/thumbnail.jpg"
    with UiProcess(page_kc, tmp_path / "ui", *args) as ui:
        assert ui.request("GET", "/api/session")[1]["thumbnails"] is True
        assert ui.request("GET", path)[0] == 401, "nobody signed in, anonymous reading off"
        status, body, _ = ui.request("GET", path, token=reader)
        assert status == 403 and "streaminputs/thumbnail" in body["message"], body
        status, body, raw = ui.request("GET", path, token=watcher)
        assert _past_authorization(status, json.dumps(body)), raw
