"""The UI's rules, in process: access through the API's rules, escaping, CSRF, login lockout
shared with the API, sessions, and `ui: false`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from registry.app import create_app
from registry.settings import Settings
from storage_backends.memory import MemoryBackend
from tests.registry.ui.conftest import EVIL, World, csrf, log_in, push
from tests.support.auth import basic


def private_urls(world: World) -> list[str]:
    base = "/ui/r/private/secret"
    return [
        base,
        f"{base}/-/image/latest",
        f"{base}/-/image/{world.private.digest}",
        f"{base}/-/blob/{world.private.layer}",
        f"{base}/-/blob/{world.private.config}",
        f"{base}/-/delete/latest",
        f"{base}/-/delete/{world.private.digest}",
    ]


async def test_anonymous_list_shows_public_repositories_only(world: World) -> None:
    page = await world.app_client.get("/ui/")
    assert page.status_code == 200
    assert "library/app" in page.text
    assert "private/secret" not in page.text
    searched = await world.app_client.get("/ui/", params={"q": "secret"})
    assert "private/secret" not in searched.text


async def test_private_repository_is_a_404_for_anonymous_by_every_url(world: World) -> None:
    for url in private_urls(world):
        got = await world.app_client.get(url)
        absent = await world.app_client.get(url.replace("private/secret", "private/nothing"))
        assert got.status_code == absent.status_code == 404, url
        # the same page as for a repository that does not exist, names aside
        assert got.text.replace("secret", "") == absent.text.replace("nothing", ""), url
    posted = await world.app_client.post(
        "/ui/r/private/secret/-/delete/latest", data={"csrf_token": "x"}
    )
    assert posted.status_code in (403, 404)


async def test_private_repository_is_a_404_for_another_user(world: World) -> None:
    assert (await log_in(world.app_client, "bob", "bob-pw")).status_code == 303
    assert "bob" in (await world.app_client.get("/ui/")).text
    assert "private/secret" not in (await world.app_client.get("/ui/")).text
    for url in private_urls(world):
        assert (await world.app_client.get(url)).status_code == 404, url
    form = await world.app_client.get("/ui/r/library/app")
    posted = await world.app_client.post(
        "/ui/r/private/secret/-/delete/latest", data={"csrf_token": csrf(form)}
    )
    assert posted.status_code == 404
    tags = await world.app_client.get(
        "/v2/private/secret/tags/list", headers=basic("alice", "alice-pw")
    )
    assert tags.json()["tags"] == ["latest"]


async def test_the_user_with_pull_rights_sees_the_private_repository(world: World) -> None:
    assert (await log_in(world.app_client, "alice", "alice-pw")).status_code == 303
    assert "private/secret" in (await world.app_client.get("/ui/")).text
    for url in private_urls(world):
        assert (await world.app_client.get(url)).status_code == 200, url


async def test_a_label_holding_a_script_is_shown_as_text(world: World) -> None:
    page = await world.app_client.get("/ui/r/library/app/-/image/v1")
    assert page.status_code == 200
    assert EVIL not in page.text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_a_repository_name_in_a_404_is_escaped(world: World) -> None:
    page = await world.app_client.get("/ui/r/<b>x</b>")
    assert page.status_code == 404
    assert "<b>x</b>" not in page.text
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text


async def test_image_page_shows_config_layers_and_referrers(world: World) -> None:
    page = await world.app_client.get(f"/ui/r/library/app/-/image/{world.public.digest}")
    text = page.text
    for expected in ("/bin/app", "--serve", "PATH=/usr/bin", "/srv", "8080/tcp", "COPY app"):
        assert expected in text, expected
    assert f'href="/ui/r/library/app/-/blob/{world.public.layer}"' in text
    assert f'href="/ui/r/library/app/-/image/{world.signature}"' in text
    assert "application/vnd.dev.cosign.artifact.sig.v1+json" in text
    assert f"docker pull registry/library/app@{world.public.digest}" in text
    referrer = await world.app_client.get(f"/ui/r/library/app/-/image/{world.signature}")
    assert f'href="/ui/r/library/app/-/image/{world.public.digest}"' in referrer.text


async def test_unknown_tag_is_a_404_that_names_it(world: World) -> None:
    page = await world.app_client.get("/ui/r/library/app/-/image/nope")
    assert page.status_code == 404
    assert "image library/app:nope" in page.text


async def test_delete_without_the_csrf_token_is_refused(world: World) -> None:
    await log_in(world.app_client, "alice", "alice-pw")
    url = "/ui/r/library/app/-/delete/v1"
    refused = await world.app_client.post(url, data={})
    assert refused.status_code == 403
    wrong = await world.app_client.post(url, data={"csrf_token": "A" * 43})
    assert wrong.status_code == 403
    assert (await world.app_client.get("/v2/library/app/manifests/v1")).status_code == 200
    confirm = await world.app_client.get(url)
    assert confirm.status_code == 200
    done = await world.app_client.post(url, data={"csrf_token": csrf(confirm)})
    assert done.status_code == 303
    assert (await world.app_client.get("/v2/library/app/manifests/v1")).status_code == 404
    # the manifest stays (a tag delete)
    by_digest = f"/v2/library/app/manifests/{world.public.digest}"
    assert (await world.app_client.get(by_digest)).status_code == 200


async def test_delete_needs_the_delete_right(world: World) -> None:
    await log_in(world.app_client, "bob", "bob-pw")
    url = "/ui/r/library/app/-/delete/v1"
    confirm = await world.app_client.get(url)
    assert confirm.status_code == 403
    token = csrf(await world.app_client.get("/ui/r/library/app"))
    assert (await world.app_client.post(url, data={"csrf_token": token})).status_code == 403
    assert (await world.app_client.get("/v2/library/app/manifests/v1")).status_code == 200
    anonymous = httpx.AsyncClient(transport=world.app_client._transport, base_url="http://r")
    async with anonymous:
        await anonymous.get("/ui/r/library/app")
        token = anonymous.cookies["pyreg_ui_csrf"]  # a valid token: the refusal is the rule's
        assert (await anonymous.post(url, data={"csrf_token": token})).status_code == 403


async def test_delete_a_manifest_by_digest(world: World) -> None:
    await log_in(world.app_client, "alice", "alice-pw")
    url = f"/ui/r/library/app/-/delete/{world.public.digest}"
    confirm = await world.app_client.get(url)
    assert "every tag pointing to it" in confirm.text
    done = await world.app_client.post(url, data={"csrf_token": csrf(confirm)})
    assert done.status_code == 303
    by_digest = f"/v2/library/app/manifests/{world.public.digest}"
    assert (await world.app_client.get(by_digest)).status_code == 404


async def test_login_lockout_is_shared_with_the_api(world: World) -> None:
    for _ in range(3):
        assert (await log_in(world.app_client, "alice", "wrong")).status_code == 401
    api = await world.app_client.get(
        "/v2/private/secret/tags/list", headers=basic("alice", "alice-pw")
    )
    assert api.status_code == 429
    ui = await log_in(world.app_client, "alice", "alice-pw")
    assert ui.status_code == 429
    assert "pyreg_ui_session" not in ui.cookies


async def test_api_failures_lock_the_ui_login(world: World) -> None:
    for _ in range(3):
        bad = await world.app_client.get(
            "/v2/private/secret/tags/list", headers=basic("alice", "x")
        )
        assert bad.status_code == 401
    assert (await log_in(world.app_client, "alice", "alice-pw")).status_code == 429


async def test_login_without_csrf_token_is_refused(world: World) -> None:
    await world.app_client.get("/ui/login")
    response = await world.app_client.post(
        "/ui/login", data={"username": "alice", "password": "alice-pw"}
    )
    assert response.status_code == 403
    assert "pyreg_ui_session" not in response.cookies


async def test_session_cookie_flags_and_logout(world: World) -> None:
    response = await log_in(world.app_client, "alice", "alice-pw")
    cookie = response.headers["set-cookie"].lower()
    session = next(c for c in response.headers.get_list("set-cookie") if "pyreg_ui_session" in c)
    assert "httponly" in session.lower() and "samesite=lax" in session.lower()
    assert "secure" not in session.lower()  # plain HTTP here
    assert cookie
    page = await world.app_client.get("/ui/")
    assert "alice" in page.text
    out = await world.app_client.post("/ui/logout", data={"csrf_token": csrf(page)})
    assert out.status_code == 303
    assert "private/secret" not in (await world.app_client.get("/ui/")).text


async def test_session_cookie_is_secure_over_tls(world: World) -> None:
    transport = world.app_client._transport
    async with httpx.AsyncClient(transport=transport, base_url="https://registry") as client:
        response = await log_in(client, "alice", "alice-pw")
        session = next(c for c in response.headers.get_list("set-cookie") if "session" in c)
        assert "secure" in session.lower()


async def test_a_forged_session_cookie_is_anonymous(world: World) -> None:
    world.app_client.cookies.set("pyreg_ui_session", "eyJ1IjoiYWxpY2UifQ.forged.sig", path="/ui/")
    page = await world.app_client.get("/ui/r/private/secret")
    assert page.status_code == 404


async def test_open_registry_shows_everything_without_login() -> None:
    app = create_app(Settings(), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            await push(c, "any/repo", "t1", b"layer")
            page = await c.get("/ui/")
            assert "any/repo" in page.text and "Log in" not in page.text
            assert (await c.get("/ui/login")).status_code == 303
            confirm = await c.get("/ui/r/any/repo/-/delete/t1")
            assert confirm.status_code == 200
            assert (await c.post("/ui/r/any/repo/-/delete/t1", data={})).status_code == 403
            done = await c.post("/ui/r/any/repo/-/delete/t1", data={"csrf_token": csrf(confirm)})
            assert done.status_code == 303
            assert (await c.get("/v2/any/repo/manifests/t1")).status_code == 404


@pytest.mark.parametrize("ui", [True, False])
async def test_ui_false_unmounts_the_interface(ui: bool) -> None:
    app = create_app(Settings(ui=ui), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            assert (await c.get("/ui/")).status_code == (200 if ui else 404)
            assert (await c.get("/ui/static/ui.js")).status_code == (200 if ui else 404)


async def test_repository_list_pages_through_the_catalog() -> None:
    app = create_app(Settings(), backend=MemoryBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
            from registry.ui import pages

            for i in range(pages.PAGE_SIZE + 3):
                await push(c, f"r/n{i:03d}", "t", b"layer")
            first = await c.get("/ui/")
            assert "r/n049" in first.text and "r/n050" not in first.text
            assert 'href="/ui/?last=r%2Fn049"' in first.text
            second = await c.get("/ui/?last=r%2Fn049")
            assert "r/n050" in second.text and "r/n052" in second.text
            assert "r/n049" not in second.text


async def test_removing_the_user_ends_their_session(world: World, settings: Settings) -> None:
    from registry.auth.htpasswd import Htpasswd

    await log_in(world.app_client, "alice", "alice-pw")
    assert (await world.app_client.get("/ui/r/private/secret")).status_code == 200
    assert settings.auth is not None
    htpasswd = Path(settings.auth["htpasswd"])
    lines = [x for x in htpasswd.read_text().splitlines() if not x.startswith("alice:")]
    htpasswd.write_text("\n".join(lines) + "\n")
    os.utime(htpasswd, (time.time() + 5, time.time() + 5))  # a visibly newer file
    assert "alice" not in Htpasswd(htpasswd).users()
    assert (await world.app_client.get("/ui/r/private/secret")).status_code == 404


@pytest.mark.parametrize("last", ["\x00", "a" * 600, "%2F..", "~~~"])
async def test_odd_page_cursors_are_not_errors(world: World, last: str) -> None:
    assert (await world.app_client.get("/ui/", params={"last": last})).status_code == 200
    page = await world.app_client.get("/ui/r/library/app", params={"last": last})
    assert page.status_code == 200


async def test_read_only_mode_refuses_a_ui_delete(tmp_path: Path) -> None:
    from storage_backends.filesystem import FilesystemBackend

    for readonly in (False, True):  # push, then serve the same storage read-only
        app = create_app(Settings(readonly=readonly), backend=FilesystemBackend(tmp_path))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://registry") as c:
                if not readonly:
                    await push(c, "any/repo", "t1", b"layer")
                    continue
                confirm = await c.get("/ui/r/any/repo/-/delete/t1")
                assert "read-only" in confirm.text and "confirm-delete" not in confirm.text
                token = c.cookies["pyreg_ui_csrf"]
                refused = await c.post("/ui/r/any/repo/-/delete/t1", data={"csrf_token": token})
                assert refused.status_code == 405
                assert (await c.get("/v2/any/repo/manifests/t1")).status_code == 200
