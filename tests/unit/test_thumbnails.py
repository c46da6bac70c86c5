"""The thumbnail endpoint's rules, as pure functions: who is asking, what they must be
allowed, which router may be sent the input's credential, what counts as a picture."""

from __future__ import annotations

from typing import Any

import pytest

from streamdist import thumbnails
from streamdist.thumbnails import AUDIENCE, Expiring, Identity, Refused

UID = "0b9f6c1e-1111-4222-8333-944455556666"


def refusal(fn: Any, *args: Any) -> int:
    """The HTTP status `fn(*args)` refuses with (the test fails if it does not)."""
    with pytest.raises(Refused) as exc:
        fn(*args)
    return exc.value.status


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None), ("", None), (None, None)],
)
def test_bearer(header: str | None, token: str | None) -> None:
    if token is None:
        assert refusal(thumbnails.bearer, header) == 401
    else:
        assert thumbnails.bearer(header) == token


def test_token_review_asks_for_the_operator_audience_only() -> None:
    assert thumbnails.token_review("t")["spec"] == {"token": "t", "audiences": [AUDIENCE]}


def _review(authenticated: bool, audiences: list[str] | None = None, **user: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"authenticated": authenticated, "user": user}
    if audiences is not None:
        status["audiences"] = audiences
    return {"status": status}


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        (_review(True, [AUDIENCE], username="system:serviceaccount:ns:page", uid="u", groups=["g"]),
         Identity("system:serviceaccount:ns:page", "u", ("g",))),
        (_review(True, None, username="alice", extra={"scopes": ["b", "a"]}),
         Identity("alice", "", (), (("scopes", ("b", "a")),))),
        (_review(False, [AUDIENCE], username="alice"), None),
        (_review(True, ["https://kubernetes.default.svc"], username="alice"), None),
        ({}, None),
    ],
)  # fmt: skip
def test_identity(review: dict[str, Any], expected: Identity | None) -> None:
    if expected is None:
        assert refusal(thumbnails.identity, review) == 401
    else:
        assert thumbnails.identity(review) == expected


def test_access_review_names_the_thumbnail_subresource_of_one_input() -> None:
    who = Identity("alice", "u1", ("team",), (("scopes", ("x",)),))
    spec = thumbnails.access_review(who, "ns", "cam")["spec"]
    assert spec["resourceAttributes"] == {"group": "streamdist.io", "resource": "streaminputs",
                                          "subresource": "thumbnail", "verb": "get",
                                          "namespace": "ns", "name": "cam"}  # fmt: skip
    assert (spec["user"], spec["uid"], spec["groups"], spec["extra"]) == ("alice", "u1", ["team"], {"scopes": ["x"]})
    assert "uid" not in thumbnails.access_review(Identity("bob"), "ns", "cam")["spec"]


@pytest.mark.parametrize(("review", "allowed"), [({"status": {"allowed": True}}, True),
                                                 ({"status": {"allowed": False, "denied": True}}, False),
                                                 ({}, False)])  # fmt: skip
def test_allowed(review: dict[str, Any], allowed: bool) -> None:
    assert thumbnails.allowed(review) is allowed


def _service(owner_uid: str | None, ip: str = "10.96.0.10", controller: bool = True) -> dict[str, Any]:
    owners = [{"uid": owner_uid, "controller": controller}] if owner_uid else []
    return {"metadata": {"ownerReferences": owners}, "spec": {"clusterIP": ip}}


@pytest.mark.parametrize(
    ("service", "found"),
    [
        (_service(UID), (UID, "10.96.0.10")),
        (_service("someone-else"), None),  # a same-named Service of another owner: never sent the credential
        (_service(UID, controller=False), None),
        (_service(None), None),
        (_service(UID, ip="None"), None),
        (_service(UID, ip=""), None),
        (None, None),
    ],
)
def test_router_host_is_the_inputs_own_service(service: dict[str, Any] | None, found: tuple[str, str] | None) -> None:
    inp = {"metadata": {"uid": UID}}
    if found is None:
        assert refusal(thumbnails.router_host, inp, service) == 404
    else:
        assert thumbnails.router_host(inp, service) == found


def test_router_host_without_the_input() -> None:
    assert refusal(thumbnails.router_host, None, _service(UID)) == 404


@pytest.mark.parametrize(
    ("code", "body", "status"),
    [(200, b"\xff\xd8jpeg\xff\xd9", None), (200, b"<html>", 502), (404, b"", 404), (401, b"", 502), (500, b"", 502)],
)
def test_picture(code: int, body: bytes, status: int | None) -> None:
    if status is None:
        assert thumbnails.picture(code, body) == body
    else:
        assert refusal(thumbnails.picture, code, body) == status


def test_expiring_forgets_after_its_time_and_stays_bounded() -> None:
    now = [0.0]
    cache = Expiring(seconds=2.0, limit=3, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] = 2.0
    assert cache.get("a") == 1
    now[0] = 2.1
    assert cache.get("a") is None
    for key in "bcd":
        cache.put(key, key)
    cache.put("e", "e")  # past the limit: everything before is dropped
    assert list(cache.items) == ["e"]
