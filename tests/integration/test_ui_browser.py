"""The control room in a real browser (Debian's headless Chromium, driven by Playwright)
against the real control plane and the operator (KWOK plays the pods): the streams
appear, an output added with the form appears and goes Streaming, suspend turns it
Suspended, a refused action shows RBAC's message, the theme switches, the keyboard
reaches every action, and nothing is fetched from anywhere but the page's own server.
Screenshots at desktop and phone width go to .state/results/ui/ (printed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from streamdist import urls
from streamdist_dev.ui import (
    READ_RULES,
    WRITE_RULES,
    UiProcess,
    apply_all,
    launch_chromium,
    page_kubeconfig,
    results_dir,
    service_account,
    stream_input,
    stream_output,
)

pytestmark = pytest.mark.timeout(400)
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
KEY = "c4n4ry-browser-key-77e1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page_ui(control_plane, operator, tmp_path_factory) -> Iterator[UiProcess]:
    """The page, with anonymous reading off: every view needs a token."""
    kc = page_kubeconfig(control_plane, tmp_path_factory.mktemp("page"), "streamdist-ui-browser")
    with UiProcess(kc, tmp_path_factory.mktemp("ui-browser")) as proc:
        yield proc


def _open(browser, ui: UiProcess, ns: str, *, viewport=DESKTOP, scheme="light", headers=None, mobile=False):
    ctx = browser.new_context(viewport=viewport, color_scheme=scheme, extra_http_headers=headers or {},
                              is_mobile=mobile, has_touch=mobile)  # fmt: skip
    page = ctx.new_page()
    foreign: list[str] = []  # requests to anywhere but the page's server, and script errors
    page.on("request", lambda r: None if r.url.startswith(ui.url + "/") else foreign.append(r.url))
    page.on("pageerror", lambda e: foreign.append(f"script error: {e}"))
    page.goto(f"{ui.url}/?namespace={ns}")
    return ctx, page, foreign


def _output_row(page, ns: str, name: str):
    return page.locator(f'[data-output="{ns}/{name}"]')


def _phase(page, ns: str, name: str, phase: str, timeout: float = 40_000):
    _output_row(page, ns, name).locator(f'[data-phase="{phase}"]').wait_for(timeout=timeout)


def test_the_control_room(k, page_ui, browser):
    apply_all(k, stream_input("cam"), stream_output("studio", url="srt://recv.example:9000?mode=caller"))
    k.wait("studio Streaming", lambda: k.status("so", "studio").get("phase") == "Streaming", timeout=40)
    editor = service_account(k, k.ns, "editor", WRITE_RULES)
    reader = service_account(k, k.ns, "reader", READ_RULES)
    shots = results_dir("ui")

    ctx, page, foreign = _open(browser, page_ui, k.ns)
    page.get_by_text("Sign in with a Kubernetes token").wait_for()
    page.click("#signin")
    page.fill("#token", editor)
    page.keyboard.press("Enter")
    page.get_by_text(f"signed in as system:serviceaccount:{k.ns}:editor").wait_for()

    # the streams appear, with the masked destination only
    card = page.locator(f'[data-input="{k.ns}/cam"]')
    card.wait_for()
    _phase(page, k.ns, "studio", "Streaming")
    assert "srt://recv.example:9000?mode=caller" in _output_row(page, k.ns, "studio").inner_text()

    # a refused form: the operator's own message next to the URL field
    card.get_by_role("button", name="Add output").click()
    dialog = page.locator("#output-dialog")
    assert dialog.locator("#o-input").input_value() == "cam" and dialog.locator("#o-namespace").input_value() == k.ns
    dialog.locator("#o-name").fill("added")
    dialog.locator("#o-protocol").select_option("rtmp")
    bad = "rtmp://recv.example/live/with space"
    dialog.locator("#o-url").fill(bad)
    dialog.get_by_role("button", name="Add output").click()
    feedback = dialog.locator("#o-url + .invalid-feedback")
    feedback.wait_for()
    with pytest.raises(urls.URLError) as operator_says:
        urls.parse(bad)
    assert feedback.inner_text() == str(operator_says.value)

    # add an output with the form: it appears and goes Streaming by itself
    dialog.locator("#o-url").fill(f"rtmp://recv.example/live/{KEY}")
    t0 = time.monotonic()
    dialog.get_by_role("button", name="Add output").click()
    _output_row(page, k.ns, "added").wait_for()
    shown = time.monotonic() - t0
    _phase(page, k.ns, "added", "Streaming")
    streaming = time.monotonic() - t0
    print(f"[ui] browser: 'Add output' clicked -> row shown {shown:.2f}s, Streaming {streaming:.2f}s (KWOK pods)")
    assert k.get("so", "added")["spec"]["url"] == f"rtmp://recv.example/live/{KEY}"
    assert KEY not in page.content(), "the stream key stays out of the page once sent"
    assert "rtmp://recv.example/live/***" in _output_row(page, k.ns, "added").inner_text()
    page.screenshot(path=str(shots / "desktop-light.png"), full_page=True)

    # suspend turns it Suspended (and the button becomes Resume)
    _output_row(page, k.ns, "added").get_by_role("button", name="Suspend").click()
    _phase(page, k.ns, "added", "Suspended")
    _output_row(page, k.ns, "added").get_by_role("button", name="Resume").wait_for()
    assert k.get("so", "added")["spec"]["suspend"] is True

    # the theme follows the system, and switches
    assert page.evaluate("document.documentElement.dataset.bsTheme") == "light"
    light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.bsTheme") == "dark":
            break
        page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.bsTheme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light_bg
    page.screenshot(path=str(shots / "desktop-dark.png"), full_page=True)

    # every action is reachable by keyboard: Tab to "Add input", Enter opens its form
    page.locator("#main").focus()
    for _ in range(40):
        if page.evaluate("document.activeElement && document.activeElement.id") == "add-input":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.locator("#input-dialog").wait_for(state="visible")
    page.keyboard.press("Escape")

    # delete with a confirmation
    _output_row(page, k.ns, "added").get_by_role("button", name="Delete").click()
    page.locator("#delete-dialog").get_by_role("button", name="Delete").click()
    _output_row(page, k.ns, "added").wait_for(state="detached")
    assert not foreign, f"the page fetched from elsewhere, or its script failed: {foreign}"
    ctx.close()

    # a reader (behind an authenticating proxy that passes the token) sees, and is refused
    ctx, page, foreign = _open(browser, page_ui, k.ns, headers={"Authorization": f"Bearer {reader}"})
    _phase(page, k.ns, "studio", "Streaming")
    _output_row(page, k.ns, "studio").get_by_role("button", name="Suspend").click()
    alert = page.get_by_role("alert").filter(has_text="Suspend studio")
    alert.wait_for()
    assert f'User "system:serviceaccount:{k.ns}:reader" cannot patch resource "streamoutputs"' in alert.inner_text()
    assert k.get("so", "studio")["spec"].get("suspend") is not True
    assert not foreign, f"the page fetched from elsewhere, or its script failed: {foreign}"
    ctx.close()

    # phone width, in the system's dark mode
    ctx, page, foreign = _open(browser, page_ui, k.ns, viewport=PHONE, scheme="dark", mobile=True,
                      headers={"Authorization": f"Bearer {editor}"})  # fmt: skip
    _phase(page, k.ns, "studio", "Streaming")
    assert page.evaluate("document.documentElement.dataset.bsTheme") == "dark"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at phone width ({width} px)"
    page.screenshot(path=str(shots / "phone-dark.png"), full_page=True)
    page.click("#theme")  # auto -> light
    page.screenshot(path=str(shots / "phone-light.png"), full_page=True)
    ctx.close()
    assert not foreign, f"the page fetched from elsewhere, or its script failed: {foreign}"
    for name in ("desktop-light", "desktop-dark", "phone-dark", "phone-light"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, f"{name}.png is empty"
    print(f"[ui] screenshots: {shots}")
