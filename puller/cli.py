"""The client's commands: parsing, output and exit codes only.

`register(subparsers)` adds login, logout, pull, push, images, tag, rmi, inspect, unpack,
load, save, tags, catalog, delete, copy and prune to `pyreg`. Expected failures print one
line `pyreg: error: ...` on stderr and exit 1; bad usage exits 2 (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ocispec.digest import Digest, DigestError, DigestMismatch
from ocispec.models import ImageConfig, Index, ManifestError, Platform, chain_ids, parse_manifest
from ocispec.reference import Reference, ReferenceError
from ocispec.units import human_size
from puller.foreign import FLAG as NONDISTRIBUTABLE_FLAG
from puller.foreign import ForeignLayerError
from puller.netopts import (
    NetOptions,
    add_authfile_argument,
    add_network_arguments,
    add_registries_conf_argument,
)
from puller.progress import NullReporter, PlainReporter, Reporter, RichReporter
from puller.push import Pusher, PushError
from puller.store import GraphStore, StoreError
from puller.store.images import image_name
from puller.tlsargs import tls_options
from regclient import credentials
from regclient.api import RegistryClient, RegistryError, Unauthorized, Unsupported
from regclient.auth import AuthError
from regclient.credentials import Credentials, CredentialsError
from regclient.tls import TLSConfigError

# Start-up time is part of every command (a third of a `pyreg push`): the modules only some
# commands need (pull, copy, layouts, unpacking, mirrors, error messages) are imported by
# those commands, not here. tests/puller/test_cli.py checks what `pyreg push` imports.


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The failures printed as one line. Imported when a command fails: a command that did
    not import a module cannot raise its errors."""
    from puller.copy import CopyError
    from puller.pull import PullError

    return (
        RegistryError,
        AuthError,
        CredentialsError,
        PullError,
        PushError,
        CopyError,
        StoreError,
        ReferenceError,
        DigestError,
        DigestMismatch,
        ManifestError,
        httpx.HTTPError,
        OSError,
        ValueError,
        TLSConfigError,
        ForeignLayerError,
    )


T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """An expected failure with a message for the user."""


def _fail(message: str) -> int:
    print(f"pyreg: error: {message}", file=sys.stderr)
    return 1


def _guard(handler: Handler, command: str = "") -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CommandError as exc:
            return _fail(str(exc))
        except Exception as exc:
            if not isinstance(exc, _expected_errors()):
                raise
            if getattr(args, "debug", False):
                traceback.print_exc()
            from puller import messages

            return _fail(messages.describe(exc, command, args))

    return run


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """On uvloop when installed (uvicorn[standard] brings it): less event-loop overhead per
    request and per piece of a streamed body (push: ~0.03 s of CPU on 150 MB)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _store() -> GraphStore:
    return GraphStore.default()


def _ref(value: str) -> Reference:
    return Reference.parse(value)


def _client(ref_or_registry: Reference | str, args: argparse.Namespace) -> RegistryClient:
    if isinstance(ref_or_registry, Reference):
        registry, repository = ref_or_registry.registry, ref_or_registry.repository
    else:
        registry, repository = ref_or_registry, None
    return NetOptions.from_args(args).client(registry, repository=repository)


def _reporter(args: argparse.Namespace) -> Reporter:
    if getattr(args, "quiet", False):
        return NullReporter()
    if not sys.stderr.isatty():
        return PlainReporter()  # logs and CI: plain lines, as docker's --progress plain
    return RichReporter()


async def _with_client(
    ref: Reference | str, args: argparse.Namespace, body: Callable[[RegistryClient], Awaitable[T]]
) -> T:
    async with _client(ref, args) as client:
        return await body(client)


# -- login / logout ---------------------------------------------------------------------------


def _registry_arg(value: str) -> str:
    """`http://host:port/` or `https://host/v2/` as docker accepts them: the host[:port]."""
    if "://" in value:
        return value.split("://", 1)[1].split("/", 1)[0]
    return value.rstrip("/")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def cmd_login(args: argparse.Namespace) -> int:
    registry = args.registry = _registry_arg(args.registry)
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password:
        print(
            "warning: a password on the command line is visible to other users; "
            "use --password-stdin",
            file=sys.stderr,
        )
        password = args.password
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise CommandError("a user name and a password are needed")
    creds = Credentials(username, password)

    async def check() -> None:
        async with RegistryClient(
            registry, credentials=creds, insecure=args.insecure, tls=tls_options(args)
        ) as client:
            await client.ping()

    try:
        _run(check())
    except (Unauthorized, AuthError) as exc:
        # Basic answers 401 itself; with Bearer the token service refuses (AuthError)
        raise CommandError(f"login to {registry} failed: {exc}") from None
    where = credentials.store(registry, username, password, authfile=args.authfile)
    print(f"Login Succeeded (credentials in {where})")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    args.registry = _registry_arg(args.registry)
    if not credentials.remove(args.registry, authfile=args.authfile):
        raise CommandError(f"not logged in to {args.registry}")
    print(f"Removed login credentials for {args.registry}")
    return 0


# -- pull / push / copy -----------------------------------------------------------------------


def cmd_pull(args: argparse.Namespace) -> int:
    from puller.mirrors import pull_image
    from puller.store.limits import SizeCaps

    ref = _ref(args.reference)
    platform = Platform.parse(args.platform) if args.platform else None
    store = _store()

    async def body() -> Any:
        with _reporter(args) as reporter:
            caps = SizeCaps.from_env(args.max_layer_size, args.max_pull_size)
            net = NetOptions.from_args(args)
            return await pull_image(
                store,
                ref,
                net,
                platform=platform,
                reporter=reporter,
                concurrency=args.concurrency,
                caps=caps,
                allow_nondistributable=args.allow_nondistributable,
                on_try=lambda source: setattr(args, "location", str(source.reference)),
            )

    result = _run(body())
    if platform is not None:
        _warn_platform(store, result.resolved_digest, platform)
    if args.quiet:
        print(result.resolved_digest)
    else:
        print(f"Digest: {result.resolved_digest}")
        print(
            f"Pulled {result.name} ({len(result.downloaded)} downloaded, "
            f"{len(result.existing)} already present)"
        )
    return 0


def _warn_platform(store: GraphStore, digest: Digest, wanted: Platform) -> None:
    """A single-platform image is taken whatever --platform says (there is no choice): say so,
    as docker does."""
    parsed = parse_manifest(store.content.read_bytes(digest))
    if isinstance(parsed, Index):
        return  # the platform was chosen from the index
    config = ImageConfig.parse(store.content.read_bytes(parsed.config.digest))
    got = f"{config.os}/{config.architecture}"
    if (config.os, config.architecture) != (wanted.os, wanted.architecture):
        print(
            f"warning: the image's platform ({got}) does not match the requested platform "
            f"({wanted}); it is a single-platform image",
            file=sys.stderr,
        )


def cmd_push(args: argparse.Namespace) -> int:
    ref = _ref(args.reference)
    store = _store()

    async def body(client: RegistryClient) -> Any:
        with _reporter(args) as reporter:
            pusher = Pusher(
                client, store, reporter=reporter, concurrency=args.concurrency,
                allow_nondistributable=args.allow_nondistributable,
            )  # fmt: skip
            return await pusher.push(ref)

    result = _run(_with_client(ref, args, body))
    if args.quiet:
        print(result.digest)
    else:
        print(f"{ref}: digest: {result.digest}")
        print(result.summary())
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from puller.copy import Copier

    src, dst = _ref(args.source), _ref(args.destination)

    async def body() -> Any:
        async with _client(src, args) as source, _client(dst, args) as target:
            with _reporter(args) as reporter:
                copier = Copier(
                    source, target, reporter=reporter,
                    allow_nondistributable=args.allow_nondistributable,
                )  # fmt: skip
                return await copier.copy(src, dst)

    result = _run(body())
    if args.quiet:
        print(result.digest)
    else:
        print(f"Copied {src} -> {dst}: digest {result.digest}")
        print(
            f"copied {len(result.copied)} blobs, mounted {len(result.mounted)}, "
            f"skipped {len(result.skipped)}"
        )
    return 0


# -- local images -----------------------------------------------------------------------------


def _local_digest(store: GraphStore, value: str) -> tuple[str, Digest]:
    """A local image by reference (`name:tag`, `name@digest`) or by manifest digest."""
    if Digest.is_valid(value):
        wanted = Digest.parse(value)
        for name, digest in store.images.list().items():
            if digest == wanted:
                return name, digest
        raise CommandError(f"no local image with digest {value}")
    name = image_name(_ref(value))
    found = store.images.get(name)
    if found is None:
        raise CommandError(f"no local image named {name}")
    return name, found


def _load_image(
    store: GraphStore, digest: Digest, platform: Platform | None = None
) -> tuple[dict[str, Any], ImageConfig]:
    from puller.pull import choose_platform, host_platform_spec

    parsed = parse_manifest(store.content.read_bytes(digest))
    if isinstance(parsed, Index):  # e.g. loaded from a layout: take the platform's image
        entry = choose_platform(parsed, platform or host_platform_spec())
        parsed = parse_manifest(store.content.read_bytes(entry.digest))
        if isinstance(parsed, Index):
            raise CommandError(f"{entry.digest}: nested indexes are not supported")
    return parsed.raw, ImageConfig.parse(store.content.read_bytes(parsed.config.digest))


def cmd_images(args: argparse.Namespace) -> int:
    store = _store()
    rows = []
    for name, digest in sorted(store.images.list().items()):
        repo, sep, tag = name.rpartition("@") if "@" in name else name.rpartition(":")
        size = 0
        image_id = "-"
        try:
            parsed = parse_manifest(store.content.read_bytes(digest))
            if not isinstance(parsed, Index):
                image_id = parsed.config.digest.short
                size = sum(layer.size for layer in parsed.layers)
        except (StoreError, ManifestError):
            image_id = "(missing)"
        rows.append((repo, tag if sep == ":" else "<none>", digest.short, image_id, size))
    if args.quiet:
        for row in rows:
            print(f"{row[0]}:{row[1]}" if row[1] != "<none>" else row[0])
        return 0
    header = ("REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "SIZE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + "  SIZE")
    for r in rows:
        cells = [str(c).ljust(w) for c, w in zip(r, widths, strict=False)]
        print("  ".join(cells) + f"  {_human(r[4])}")
    return 0


def _human(n: int) -> str:
    return human_size(n)


def cmd_tag(args: argparse.Namespace) -> int:
    store = _store()
    _, digest = _local_digest(store, args.source)
    target = _ref(args.target)
    if target.digest is not None:
        raise CommandError("a tag target cannot carry a digest")
    store.images.set(image_name(target), digest)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    store = _store()
    status = 0
    for value in args.images:
        try:
            name = image_name(_ref(value))
        except ReferenceError as exc:
            status = _fail(str(exc))
            continue
        held = _held_by(store, name)
        if held:
            status = _fail(f"unable to remove {name}: image is in use by {held}")
            continue
        if store.images.remove(name):
            print(f"Untagged: {name}")
        else:
            status = _fail(f"no local image named {name}")
    return status


def _held_by(store: GraphStore, name: str) -> str | None:
    """Who holds the image `name` when it is its last name (a container, a build), or None."""
    digest = store.images.get(name)
    if digest is None:
        return None
    holders = store.holds.held().get(digest)
    others = [n for n, d in store.images.list().items() if d == digest and n != name]
    return ", ".join(holders) if holders and not others else None


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.remote:
        ref = _ref(args.reference)

        async def body(client: RegistryClient) -> dict[str, Any]:
            fetched = await client.get_manifest(ref.repository, ref.identifier)
            out: dict[str, Any] = {
                "name": str(ref),
                "digest": str(fetched.digest),
                "mediaType": fetched.media_type,
                "manifest": json.loads(fetched.data),
            }
            parsed = parse_manifest(fetched.data, fetched.media_type or None)
            if not isinstance(parsed, Index):
                async with client.get_blob(ref.repository, parsed.config.digest) as response:
                    out["config"] = json.loads(await response.aread())
            return out

        info = _run(_with_client(ref, args, body))
    else:
        store = _store()
        name, digest = _local_digest(store, args.reference)
        data = store.content.read_bytes(digest)
        parsed = parse_manifest(data)
        info = {
            "name": name,
            "digest": str(digest),
            "mediaType": parsed.media_type,
            "manifest": json.loads(data),
        }
        if not isinstance(parsed, Index):
            info["config"] = json.loads(store.content.read_bytes(parsed.config.digest))
    print(json.dumps(info, indent=2))
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from puller.store.rootfs import assemble_rootfs

    store = _store()
    _, digest = _local_digest(store, args.reference)
    platform = Platform.parse(args.platform) if args.platform else None
    _, config = _load_image(store, digest, platform)
    target = Path(args.directory)
    if target.exists() and any(target.iterdir()):
        raise CommandError(f"{target} exists and is not empty")
    chains = chain_ids(config.diff_ids)
    missing = [c for c in chains if store.layers.get(c) is None]
    if missing:
        raise CommandError(f"layer {missing[0]} is not in the store: pull the image again")
    target.mkdir(parents=True, exist_ok=True)
    # owner-only by default (as umoci): the image's setuid files and device nodes must not
    # be reachable by other local users through the new tree
    os.chmod(target, args.mode)
    assemble_rootfs(store, chains, target)
    if not args.quiet:
        print(f"Unpacked {_plural(len(chains), 'layer')} into {target}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from puller import layout

    names = layout.load(_store(), Path(args.input), args.repository)
    for name in names:
        print(f"Loaded image: {name}")
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    from puller import layout

    store = _store()
    names = [_local_digest(store, value)[0] for value in args.images]
    layout.save(store, names, Path(args.output))
    if not args.quiet:
        print(f"Saved {len(names)} image(s) to {args.output}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from puller.store.gc import prune

    report = prune(_store())
    partials = f" and {report.partials} abandoned partial downloads" if report.partials else ""
    print(
        f"Removed {len(report.blobs)} blobs ({_human(report.bytes_freed)}) and "
        f"{len(report.layers)} unpacked layers{partials}"
    )
    return 0


# -- remote listings and delete ---------------------------------------------------------------


def cmd_tags(args: argparse.Namespace) -> int:
    ref = _ref(args.repository)
    for tag in _run(_with_client(ref, args, lambda c: c.tags(ref.repository))):
        print(tag)
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    for repo in _run(_with_client(args.registry, args, lambda c: c.catalog())):
        print(repo)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    ref = _ref(args.reference)

    async def body(client: RegistryClient) -> str:
        try:
            await client.delete_manifest(ref.repository, ref.identifier)
            return ref.identifier
        except RegistryError as exc:
            # before spec v1.1 only digests could be deleted: distribution 2.8 answers a tag
            # with DIGEST_INVALID, others with UNSUPPORTED; then resolve the tag
            by_tag_refused = isinstance(exc, Unsupported) or exc.code == "DIGEST_INVALID"
            if ref.digest is not None or not by_tag_refused:
                raise
        info = await client.head_manifest(ref.repository, ref.identifier)
        if info is None or info.digest is None:
            raise CommandError(f"{ref}: not found")
        await client.delete_manifest(ref.repository, str(info.digest))
        return str(info.digest)

    deleted = _run(_with_client(ref, args, body))
    print(f"Deleted: {ref.name}@{deleted}" if Digest.is_valid(deleted) else f"Deleted: {ref}")
    return 0


# -- registration -----------------------------------------------------------------------------


def _net(p: argparse.ArgumentParser) -> None:
    add_network_arguments(p)


def _authfile(p: argparse.ArgumentParser) -> None:
    add_authfile_argument(p)


def _size(value: str) -> int:
    from puller.store.limits import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _octal_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise argparse.ArgumentTypeError(f"not an octal mode: {value!r}")
    return mode


def _nondistributable(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        NONDISTRIBUTABLE_FLAG,
        action="store_true",
        help=f"{what} (default $PYREG_ALLOW_NONDISTRIBUTABLE; docs/client.md)",
    )


def _quiet(p: argparse.ArgumentParser, what: str = "print only the digest") -> None:
    p.add_argument("-q", "--quiet", action="store_true", help=what)


def register(subparsers: Any) -> None:
    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subparsers.add_parser(
            name, help=help_text, description=help_text
        )
        p.set_defaults(func=_guard(handler, name))
        p.add_argument("--debug", action="store_true", help="on failure, print the traceback")
        return p

    p = add("login", cmd_login, "Log in to a registry; stores credentials in docker's config.json")
    p.add_argument("registry", help="registry host[:port]")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="(insecure: prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _net(p)

    p = add("logout", cmd_logout, "Remove a registry's credentials from docker's config.json")
    p.add_argument("registry")
    _authfile(p)

    p = add("pull", cmd_pull, "Pull an image into the local store")
    p.add_argument("reference", help="[host[:port]/]name[:tag][@digest]")
    p.add_argument("--platform", help="os/arch[/variant] to take from an index (default: host)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel downloads (default 4)")
    p.add_argument(
        "--max-layer-size",
        type=_size,
        help="refuse a layer larger than this uncompressed (e.g. 2G; default "
        "$PYREG_MAX_LAYER_SIZE or 16G)",
    )
    p.add_argument(
        "--max-pull-size",
        type=_size,
        help="refuse an image whose layers add up to more than this uncompressed "
        "(default $PYREG_MAX_PULL_SIZE or 64G)",
    )
    _nondistributable(p, "fetch foreign layers the registry lacks from their URLs")
    _quiet(p)
    _net(p)
    add_registries_conf_argument(p)

    p = add("push", cmd_push, "Push a local image to its registry")
    p.add_argument("reference")
    p.add_argument("--concurrency", type=int, default=4, help="parallel uploads (default 4)")
    _nondistributable(p, "upload foreign layers too, instead of leaving them at their URLs")
    _quiet(p)
    _net(p)

    p = add("copy", cmd_copy, "Copy an image from one registry/repository to another")
    p.add_argument("source")
    p.add_argument("destination")
    _nondistributable(p, "copy foreign layers too (from the source or their URLs)")
    _quiet(p)
    _net(p)

    p = add("images", cmd_images, "List local images")
    _quiet(p, "print only the names")

    p = add("tag", cmd_tag, "Give a local image another name")
    p.add_argument("source", help="local name or manifest digest")
    p.add_argument("target")

    p = add("rmi", cmd_rmi, "Remove local image names (content goes with `prune`)")
    p.add_argument("images", nargs="+")

    p = add("inspect", cmd_inspect, "Show an image's manifest and config as JSON")
    p.add_argument("reference")
    p.add_argument("--remote", action="store_true", help="ask the registry, not the local store")
    _net(p)

    p = add("unpack", cmd_unpack, "Assemble a local image's root filesystem into DIR")
    p.add_argument("reference")
    p.add_argument("directory")
    p.add_argument("--platform", help="os/arch[/variant] when REF is an index (default: host)")
    p.add_argument(
        "--mode",
        type=_octal_mode,
        default=0o700,
        help="permissions of DIR itself, octal (default 0700: owner only)",
    )
    _quiet(p, "print nothing")

    p = add("load", cmd_load, "Load images from an OCI layout (dir or tar) or a docker save tar")
    p.add_argument("input", help="directory or tar file")
    p.add_argument(
        "-r", "--repository", help="name for OCI layout images without a full name annotation"
    )

    p = add("save", cmd_save, "Save local images to an OCI image layout")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", required=True, help="target directory (created or added to)")
    _quiet(p, "print nothing")

    p = add("tags", cmd_tags, "List a repository's tags on its registry")
    p.add_argument("repository", help="host[:port]/name")
    _net(p)

    p = add("catalog", cmd_catalog, "List a registry's repositories")
    p.add_argument("registry")
    _net(p)

    p = add("delete", cmd_delete, "Delete a manifest (by tag or digest) on its registry")
    p.add_argument("reference")
    _net(p)

    add("prune", cmd_prune, "Delete local blobs and layers no image name refers to")
