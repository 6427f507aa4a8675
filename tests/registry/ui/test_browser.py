"""The UI in a real browser: Debian's chromium, headless, driven by selenium through Debian's
chromedriver, against a real `pyreg serve` filled over HTTP with images, an index and a
signature. Screenshots go to a temporary directory, or to $PYREG_UI_SCREENSHOTS (the ones in
docs/ui/ were made so)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocispec import mediatypes as mt
from tests.registry.ui.conftest import EVIL, RULES, USERS
from tests.support.auth import auth_section
from tests.support.images import Image, build_image, file
from tests.support.server import RegistryServer

pytestmark = [pytest.mark.interop, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
]


def _push_blob(client: httpx.Client, name: str, digest: str, data: bytes) -> None:
    response = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data)
    assert response.status_code == 201, response.text


def _put(client: httpx.Client, name: str, ref: str, data: bytes, media_type: str) -> None:
    response = client.put(
        f"/v2/{name}/manifests/{ref}", content=data, headers={"Content-Type": media_type}
    )
    assert response.status_code == 201, response.text


def _push_image(client: httpx.Client, name: str, tag: str, image: Image) -> None:
    for digest, data in image.blobs().items():
        _push_blob(client, name, str(digest), data)
    _put(client, name, tag, image.manifest, image.manifest_media_type)


def _config(arch: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "created": "2026-03-04T05:06:07Z",
        "config": {
            "Entrypoint": ["/usr/bin/web"],
            "Cmd": ["--port", "8080"],
            "Env": ["PATH=/usr/bin", "MODE=production"],
            "WorkingDir": "/srv",
            "User": "web",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": labels,
        },
        "history": [
            {"created_by": "ADD rootfs.tar /", "created": "2026-03-04T05:00:00Z"},
            {"created_by": "COPY web /usr/bin/web", "created": "2026-03-04T05:06:07Z"},
        ],
        "architecture": arch,
    }


def fill(url: str) -> dict[str, str]:
    """Push the images the walk uses; their digests by name."""
    auth = httpx.BasicAuth("admin", USERS["admin"])
    layers = [[file("etc/os-release", b"ID=test\n")], [file("usr/bin/web", b"#!/bin/sh\n")]]
    out: dict[str, str] = {}
    with httpx.Client(base_url=url, auth=auth, timeout=30) as client:
        labels = {"org.opencontainers.image.title": "web", "note": EVIL}
        web = build_image(layers, config_extra=_config("amd64", labels))
        _push_image(client, "library/web", "1.0", web)
        _push_image(client, "library/web", "latest", web)
        arm = build_image(layers, architecture="arm64", config_extra=_config("arm64", {}))
        _push_image(client, "library/web", str(arm.digest), arm)
        index = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {**web.descriptor(), "platform": {"os": "linux", "architecture": "amd64"}},
                {**arm.descriptor(), "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }
        index_bytes = json.dumps(index).encode()
        _put(client, "library/web", "multi", index_bytes, mt.OCI_INDEX)
        empty = b"{}"
        _push_blob(client, "library/web", "sha256:" + _sha(empty), empty)
        payload = b'{"critical":{"image":{"docker-manifest-digest":"' + str(web.digest).encode()
        payload += b'"}}}'
        _push_blob(client, "library/web", "sha256:" + _sha(payload), payload)
        signature = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:" + _sha(empty),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": "sha256:" + _sha(payload),
                    "size": len(payload),
                }
            ],
            "subject": web.descriptor(),
        }
        signature_bytes = json.dumps(signature).encode()
        _put(
            client,
            "library/web",
            "sha256:" + _sha(signature_bytes),
            signature_bytes,
            mt.OCI_MANIFEST,
        )
        other = build_image([[file("x", b"x")]])
        _push_image(client, "library/tools", "2024", other)
        _push_image(client, "private/secret", "latest", other)
        out.update(web=str(web.digest), signature="sha256:" + _sha(signature_bytes))
    return out


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    chosen = os.environ.get("PYREG_UI_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(
            "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except WebDriverException as exc:
        pytest.skip(f"chromium could not start: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_browse_filter_login_delete_logout(browser: Any, tmp_path: Path, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    config = {"auth": auth_section(tmp_path, USERS, RULES), "ui": True}
    with RegistryServer(f"file://{tmp_path / 'storage'}", config=config) as server:
        digests = fill(server.url)
        wait = WebDriverWait(browser, 20)

        def shot(name: str) -> None:
            browser.save_screenshot(str(screenshots / f"{name}.png"))

        def text() -> str:
            return str(browser.find_element(By.TAG_NAME, "main").text)

        # the list: public repositories only, filtered as one types
        browser.get(f"{server.url}/ui/")
        assert "library/web" in text() and "library/tools" in text()
        assert "private/secret" not in browser.page_source
        shot("repositories")
        browser.find_element(By.ID, "q").send_keys("too")
        wait.until(
            lambda d: (
                not d.find_element(By.CSS_SELECTOR, 'tr[data-name="library/web"]').is_displayed()
            )
        )
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-name="library/tools"]').is_displayed()
        browser.find_element(By.ID, "q").send_keys("\n")  # the server's filter (?q=)
        wait.until(ec.url_contains("q=too"))
        assert "library/tools" in text() and "library/web" not in text()
        browser.get(f"{server.url}/ui/")

        # a repository, then an image: config, layers, referrers; the label is text
        browser.find_element(By.LINK_TEXT, "library/web").click()
        wait.until(ec.title_contains("library/web"))
        assert "multi" in text() and "linux/amd64, linux/arm64" in text()
        shot("repository")
        copy = browser.find_element(By.CSS_SELECTOR, "#tags button.copy")
        copy.click()  # clipboard.js (vendored) answers on the button
        wait.until(lambda d: copy.text in ("Copied", "Press Ctrl+C"))
        assert copy.get_attribute("data-copied") == "yes", copy.text
        browser.find_element(By.LINK_TEXT, "1.0").click()
        wait.until(ec.presence_of_element_located((By.ID, "layers")))
        assert EVIL in text()  # shown as text, not run
        assert "/usr/bin/web" in text() and "COPY web /usr/bin/web" in text()
        shot("image")
        browser.find_element(By.CSS_SELECTOR, "#raw summary").click()
        assert '"schemaVersion": 2' in browser.find_element(By.CSS_SELECTOR, "#raw pre").text
        browser.find_element(By.CSS_SELECTOR, "a.layer").click()
        wait.until(ec.presence_of_element_located((By.ID, "blob-digest")))
        browser.back()
        browser.find_element(By.CSS_SELECTOR, "#referrers a.digest").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "digest"), digests["signature"]))
        assert "cosign" in text()
        browser.get(f"{server.url}/ui/r/library/web/-/image/multi")
        assert "linux/arm64" in browser.find_element(By.ID, "platforms").text

        # private: a 404 for an anonymous visitor by every URL
        for url in ("private/secret", "private/secret/-/image/latest"):
            browser.get(f"{server.url}/ui/r/{url}")
            assert "Not found" in browser.title, url
        shot("not-found")

        # log in (keyboard only), delete a tag after confirming, log out
        browser.get(f"{server.url}/ui/login")
        browser.find_element(By.ID, "username").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys(USERS["alice"] + "\n")
        wait.until(ec.presence_of_element_located((By.ID, "user")))
        assert "private/secret" in text()
        browser.get(f"{server.url}/ui/r/library/web")
        browser.find_element(By.CSS_SELECTOR, 'a[aria-label="Delete tag latest"]').click()
        wait.until(ec.presence_of_element_located((By.ID, "confirm-delete")))
        shot("delete")
        browser.find_element(By.ID, "confirm-delete").click()
        wait.until(ec.title_contains("library/web"))
        tags = [
            a.text for a in browser.find_elements(By.CSS_SELECTOR, "#tags tbody td:first-child a")
        ]
        assert "latest" not in tags and "1.0" in tags
        gone = httpx.get(
            f"{server.url}/v2/library/web/manifests/latest",
            auth=httpx.BasicAuth("admin", USERS["admin"]),
        )
        assert gone.status_code == 404
        browser.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "login-link")))
        browser.get(f"{server.url}/ui/r/private/secret")
        assert "Not found" in browser.title

        # a phone in dark mode: the system setting is followed, nothing overflows the page
        dark = {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", dark)
        browser.set_window_size(390, 844)
        browser.get(f"{server.url}/ui/r/library/web/-/image/1.0")
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert background == "rgb(13, 17, 23)"
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= browser.execute_script("return window.innerWidth")
        shot("phone-dark")
