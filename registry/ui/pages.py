"""The UI's handlers: thin, over the registry's stores and its access controller.

Every repository page first asks the controller whether the visitor may pull the repository;
when not, the answer is the same 404 as for a repository that does not exist, so private
names do not leak. Deletes need the `delete` action, as `DELETE /v2/.../manifests/...` does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ocispec.digest import Digest, DigestError
from ocispec.reference import valid_repository_name, valid_tag
from registry import errors
from registry.auth.base import USER_SCOPE, Access, Principal, delete, pull
from registry.auth.controller import TokenAccess
from registry.auth.credentials import LockedOut, LoginFailed
from registry.auth.token_endpoint import client_address
from registry.events import emit
from registry.handlers.base import access, settings, store
from registry.ui import session, views
from registry.ui.render import render

PAGE_SIZE = 50
SEPARATOR = "/-/"
FORM_REFUSED = "The form expired or did not come from this site; try again."


class NotFoundPage(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class MessagePage(Exception):
    """A refusal shown as message.html with this status (caught by `dispatch`)."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


def controller(request: Request) -> TokenAccess | None:
    found = access(request)
    return found if isinstance(found, TokenAccess) else None


def visitor(request: Request) -> Principal:
    auth = controller(request)
    principal = Principal(None) if auth is None else session.current_user(request, auth)
    request.state.principal = principal  # who did it, for events
    request.scope[USER_SCOPE] = principal.name  # for the access and audit logs
    return principal


async def may(request: Request, principal: Principal, need: Access) -> bool:
    return await access(request).may(request, principal, need)


async def visible_repository(request: Request, principal: Principal, name: str) -> None:
    """NotFoundPage unless `name` exists and the visitor may pull it (one answer for both)."""
    if (
        not valid_repository_name(name)
        or not await may(request, principal, pull(name))
        or not await store(request).catalog.exists(name)
    ):
        raise NotFoundPage(f"repository {name}")


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    principal: Principal = getattr(request.state, "principal", Principal(None))
    response = render(
        request,
        template,
        status,
        user=principal.name,
        login_enabled=controller(request) is not None,
        csrf_token=session.csrf_token(request),
        **context,
    )
    session.keep_csrf(request, response)
    return response


def not_found(request: Request, what: str) -> Response:
    return page(request, "not_found.html", 404, what=what)


def message(request: Request, status: int, title: str, text: str) -> Response:
    return page(request, "message.html", status, title=title, message=text)


async def repositories(request: Request) -> Response:
    principal = visitor(request)
    query = request.query_params.get("q", "").strip()[:256]
    last = request.query_params.get("last") or None
    auth = access(request)

    async def shown(name: str) -> bool:
        return (not query or query.lower() in name.lower()) and await auth.may(
            request, principal, pull(name)
        )

    found = await store(request).catalog.page(PAGE_SIZE, last, shown)
    rows = []
    for name in found.items:
        tags = await store(request).tags.page(name, 100, None)
        rows.append({"name": name, "tags": f"{len(tags.items)}{'+' if tags.next_last else ''}"})
    next_url = None
    if found.next_last is not None:
        params = {"last": found.next_last, **({"q": query} if query else {})}
        next_url = "/ui/?" + urlencode(params)
    return page(request, "repositories.html", rows=rows, query=query, next_url=next_url)


SORTS = {
    "tag": lambda r: r.tag,
    "created": lambda r: r.created,
    "size": lambda r: r.size or 0,
}


async def repository(request: Request, name: str) -> Response:
    principal = visitor(request)
    await visible_repository(request, principal, name)
    last = request.query_params.get("last") or None
    tags = await store(request).tags.page(name, PAGE_SIZE, last)
    rows = [row for t in tags.items if (row := await views.tag_row(store(request), name, t))]
    sort = request.query_params.get("sort", "tag")
    if sort in SORTS:
        rows.sort(key=SORTS[sort], reverse=sort != "tag")
    next_url = None
    if tags.next_last is not None:
        next_url = f"/ui/r/{name}?" + urlencode({"last": tags.next_last, "sort": sort})
    return page(
        request,
        "repository.html",
        name=name,
        rows=rows,
        sort=sort,
        next_url=next_url,
        host=request.url.netloc,
        can_delete=await may(request, principal, delete(name)),
    )


def _reference(raw: str) -> Digest | str:
    if valid_tag(raw):
        return raw
    try:
        return Digest.parse(raw)
    except DigestError:
        raise NotFoundPage(f"image {raw}") from None


async def image(request: Request, name: str, raw: str) -> Response:
    principal = visitor(request)
    await visible_repository(request, principal, name)
    reference = _reference(raw)
    try:
        view = await views.image(store(request), name, reference)
    except errors.RegistryError:
        what = f"image {name}:{raw}" if valid_tag(raw) else f"image {name}@{raw}"
        raise NotFoundPage(what) from None
    return page(
        request,
        "image.html",
        name=name,
        reference=raw,
        view=view,
        host=request.url.netloc,
        can_delete=await may(request, principal, delete(name)),
    )


async def blob(request: Request, name: str, raw: str) -> Response:
    """A layer or config: its descriptor in the images that use it is on the image page; here,
    its size, and a config's (small JSON) content."""
    principal = visitor(request)
    await visible_repository(request, principal, name)
    try:
        digest = Digest.parse(raw)
        size = await store(request).blobs.size(name, digest)
    except (DigestError, errors.RegistryError):
        raise NotFoundPage(f"blob {name}@{raw}") from None
    content = None
    data = await views.read_small_blob(store(request), name, str(digest))
    if data is not None and data[:1] == b"{":
        content = data.decode("utf-8", "replace")
    return page(request, "blob.html", name=name, digest=str(digest), size=size, content=content)


async def _delete_target(
    request: Request, principal: Principal, name: str, raw: str
) -> Digest | str:
    """What `raw` names in `name`, once the visitor may see the repository and delete from it
    (NotFoundPage, MessagePage otherwise): the one check of the confirmation and the delete."""
    await visible_repository(request, principal, name)
    reference = _reference(raw)
    if not await may(request, principal, delete(name)):
        raise MessagePage(403, "Not allowed", f"You may not delete from {name}.")
    return reference


async def confirm_delete(request: Request, name: str, raw: str) -> Response:
    principal = visitor(request)
    reference = await _delete_target(request, principal, name, raw)
    try:
        digest = await store(request).manifests.resolve(name, reference)
    except errors.RegistryError:
        raise NotFoundPage(f"image {name}:{raw}") from None
    return page(
        request,
        "delete.html",
        name=name,
        reference=raw,
        is_tag=isinstance(reference, str),
        digest=str(digest),
        readonly=settings(request).readonly,
    )


async def do_delete(request: Request, name: str, raw: str) -> Response:
    principal = visitor(request)
    form = await request.form(max_files=0, max_fields=8)
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
        return message(request, 403, "Refused", FORM_REFUSED)
    reference = await _delete_target(request, principal, name, raw)
    if settings(request).readonly:
        return message(request, 405, "Read-only", "The registry is in read-only mode.")
    try:
        await store(request).manifests.delete(name, reference)
    except errors.RegistryError:
        raise NotFoundPage(f"image {name}:{raw}") from None
    await emit.manifest_deleted(request, name, reference)
    return RedirectResponse(f"/ui/r/{name}", status_code=303)


async def login_form(request: Request) -> Response:
    visitor(request)
    if controller(request) is None:
        return RedirectResponse("/ui/", status_code=303)
    return page(request, "login.html", error=None, username="")


async def login(request: Request) -> Response:
    visitor(request)
    auth = controller(request)
    if auth is None:
        return RedirectResponse("/ui/", status_code=303)
    form = await request.form(max_files=0, max_fields=8)
    username, password = form.get("username"), form.get("password")
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
        return page(request, "login.html", 403, error="The form expired; try again.", username="")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return page(
            request, "login.html", 400, error="User name and password, please.", username=""
        )
    try:
        principal = await auth.authenticator.login(client_address(request), username, password)
    except LockedOut as exc:
        response = page(request, "login.html", 429, error=str(exc), username=username)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except LoginFailed:
        return page(
            request, "login.html", 401, error="Invalid user name or password.", username=username
        )
    response = RedirectResponse("/ui/", status_code=303)
    session.start_session(request, response, auth, principal.name or "")
    return response


async def logout(request: Request) -> Response:
    visitor(request)
    form = await request.form(max_files=0, max_fields=8)
    if not session.csrf_ok(request, form.get(session.CSRF_FIELD)):
        return message(request, 403, "Refused", FORM_REFUSED)
    response = RedirectResponse("/ui/", status_code=303)
    session.end_session(request, response)
    return response


async def dispatch(request: Request) -> Response:
    """`/ui/r/NAME`, `/ui/r/NAME/-/image/REF`, `.../-/blob/DIGEST`, `.../-/delete/REF`.
    `/-/` cannot occur in a repository name (a path component starts with a letter or digit)."""
    rest = str(request.path_params["rest"])
    name, _, tail = rest.partition(SEPARATOR)
    kind, _, raw = tail.partition("/")
    try:
        if not tail:
            return await repository(request, name)
        if kind == "image" and raw:
            return await image(request, name, raw)
        if kind == "blob" and raw:
            return await blob(request, name, raw)
        if kind == "delete" and raw:
            if request.method == "POST":
                return await do_delete(request, name, raw)
            return await confirm_delete(request, name, raw)
        raise NotFoundPage(f"page {request.url.path}")
    except NotFoundPage as exc:
        return not_found(request, exc.what)
    except MessagePage as exc:
        return message(request, exc.status, exc.title, exc.text)


async def unknown(request: Request) -> Response:
    visitor(request)
    return not_found(request, f"page {request.url.path}")
