"""Execute a parsed Dockerfile: stages, instructions, layers, cache; the image into the store.

Each stage starts from an image of the local store (pulled if missing, as `docker build`
does), from `scratch` or from an earlier stage. Instructions that only change the image
config are recorded in its config and history (`empty_layer`). Instructions that change the
filesystem (RUN, COPY, ADD, a WORKDIR that does not exist yet) run on a rootfs assembled from
the stage's layers by `runtime.rootfs` (overlay where possible), RUN inside a container on
runc with the network off unless `--network=host`; the step's changes become one layer
(`layer.py`), remembered by the cache (`cache.py`).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import posixpath
import secrets
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from builder.cache import BuildCache, CachedLayer, CachedStep, cache_key
from builder.context import Ignore, Source, digest_sources, resolve_sources, walk
from builder.dockerfile import Dockerfile, Instruction, parse
from builder.errors import BuildError
from builder.layer import changes_between, changes_from_upper, snapshot, store_layer
from builder.words import SubstitutionError, expand, split_words
from ocispec import mediatypes as mt
from ocispec.digest import Digest, digest_bytes
from ocispec.models import Platform, chain_ids
from ocispec.reference import Reference, ReferenceError
from puller.netopts import NetOptions
from puller.pull import host_platform_spec
from puller.store import GraphStore, assemble_rootfs
from puller.store.files import force_rmtree
from puller.store.images import image_name
from puller.store.tarsafe import Applier, Entry, clean_name
from puller.store.unpack import apply_tar_member
from runtime import rootfs
from runtime.engine import seccomp_filter
from runtime.errors import ContainerError
from runtime.images import resolve_image
from runtime.runc import Runc, check_privileges
from runtime.spec import DEFAULT_PATH, ProcessSpec, runtime_spec
from runtime.users import resolve_in_root, resolve_user

DEFAULT_SHELL = ["/bin/sh", "-c"]
UNTAGGED = "localhost/pyreg-build"  # the repository of images built without -t
_DOCKER_TO_OCI = {mt.DOCKER_LAYER: mt.OCI_LAYER_GZIP}


@dataclass
class BuildOptions:
    context: Path
    dockerfile: Path | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    platform: Platform | None = None
    compression: str = "gzip"
    output: IO[str] = field(default_factory=lambda: sys.stdout)
    net: NetOptions = field(default_factory=NetOptions)  # how a missing base image is pulled


@dataclass
class LayerRef:
    diff_id: Digest
    digest: Digest
    size: int
    media_type: str


@dataclass
class Stage:
    name: str | None
    config: dict[str, Any]
    layers: list[LayerRef]
    history: list[dict[str, Any]]
    os: str
    architecture: str
    variant: str | None
    created: str
    author: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False

    @property
    def chains(self) -> list[Digest]:
        return chain_ids([layer.diff_id for layer in self.layers])

    @property
    def top(self) -> Digest | None:
        chains = self.chains
        return chains[-1] if chains else None

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def substitution(self) -> dict[str, str]:
        return {**self.args, **self.env()}


@dataclass
class BuildResult:
    manifest_digest: Digest
    config_digest: Digest
    names: list[str]
    steps: int
    cached: int


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
        if epoch and epoch.isdigit()
        else datetime.datetime.now(datetime.UTC)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _base_time() -> str:
    """The time of a base without one (scratch): fixed, so unchanged rebuilds are identical."""
    epoch = _epoch() or 0
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else None


class Builder:
    def __init__(self, store: GraphStore, opts: BuildOptions) -> None:
        self.store = store
        self.opts = opts
        self.cache = BuildCache(store)
        self.context = Path(opts.context).resolve()
        self.ignore = Ignore.of(self.context)
        self.stages: list[Stage] = []
        self.steps = 0
        self.cached = 0
        self.host = host_platform_spec()
        self._runc: Runc | None = None
        self.df: Dockerfile | None = None

    def say(self, text: str) -> None:
        print(text, file=self.opts.output, flush=True)

    # -- driver ---------------------------------------------------------------------------

    def build(self) -> BuildResult:
        check_privileges()
        if not self.context.is_dir():
            raise BuildError(f"build context {self.opts.context} is not a directory")
        path = self.opts.dockerfile or self.context / "Dockerfile"
        if not path.is_file():
            raise BuildError(f"cannot read the Dockerfile: {path} does not exist")
        df = parse(path.read_text(), str(path.name if path.parent == self.context else path))
        self.df = df
        groups = self._stages(df)
        if self.opts.target is not None and not any(
            self._stage_name(g) == self.opts.target for g in groups
        ):
            raise BuildError(f"target stage {self.opts.target!r} could not be found")
        global_args: dict[str, str] = {}
        for ins in df.instructions:
            if ins.keyword != "ARG":
                break
            for name, value in self._arg_pairs(df, ins, global_args):
                global_args[name] = self.opts.build_args.get(name, value or "")
        total = sum(len(g) for g in groups)
        for group in groups:
            stage = self._from(df, group[0], global_args, total)
            for ins in group[1:]:
                self._step(df, stage, ins, total)
            self.stages.append(stage)
            if stage.name is not None and stage.name == self.opts.target:
                break
        return self._commit(self.stages[-1])

    def _stages(self, df: Dockerfile) -> list[list[Instruction]]:
        groups: list[list[Instruction]] = []
        for ins in df.instructions:
            if ins.keyword == "FROM":
                groups.append([ins])
            elif groups:
                groups[-1].append(ins)
        return groups

    @staticmethod
    def _stage_name(group: list[Instruction]) -> str | None:
        words = group[0].raw.split()
        return words[2].lower() if len(words) == 3 else None

    def _expand(self, df: Dockerfile, ins: Instruction, text: str, env: dict[str, str]) -> str:
        try:
            return expand(text, env, df.escape)
        except SubstitutionError as exc:
            raise df.error(ins, str(exc)) from None

    def _words(self, df: Dockerfile, ins: Instruction, env: dict[str, str]) -> list[str]:
        if ins.exec_form is not None:
            return [self._expand(df, ins, w, env) for w in ins.exec_form]
        try:
            return split_words(ins.raw, env, df.escape)
        except SubstitutionError as exc:
            raise df.error(ins, str(exc)) from None

    # -- FROM -------------------------------------------------------------------------------

    def _from(
        self, df: Dockerfile, ins: Instruction, global_args: dict[str, str], total: int
    ) -> Stage:
        self.steps += 1
        self.say(f"STEP {self.steps}/{total}: {ins.original}")
        words = ins.raw.split()
        base = self._expand(df, ins, words[0], global_args)
        name = words[2].lower() if len(words) == 3 else None
        platform = self.opts.platform
        if "platform" in ins.flags:
            value = self._expand(df, ins, ins.flags["platform"], global_args)
            try:
                platform = Platform.parse(value)
            except ValueError as exc:
                raise df.error(ins, str(exc)) from None
        wanted = platform or self.host
        for earlier in self.stages:
            if earlier.name is not None and earlier.name == base.lower():
                stage = copy.deepcopy(earlier)
                stage.name, stage.args, stage.cmd_set = name, {}, False
                return stage
        if base == "scratch":
            return Stage(
                name, {}, [], [], wanted.os, wanted.architecture, wanted.variant, _base_time()
            )
        try:
            image = resolve_image(self.store, base, platform=platform, net=self.opts.net)
        except (ContainerError, ReferenceError) as exc:
            raise df.error(ins, str(exc)) from None
        raw = image.config.raw
        layers = [
            LayerRef(
                diff_id,
                desc.digest,
                desc.size,
                _DOCKER_TO_OCI.get(desc.media_type, desc.media_type),
            )
            for diff_id, desc in zip(image.config.diff_ids, image.manifest.layers, strict=True)
        ]
        return Stage(
            name,
            copy.deepcopy(raw.get("config") or {}),
            layers,
            copy.deepcopy(list(raw.get("history") or [])),
            image.config.os or wanted.os,
            image.config.architecture or wanted.architecture,
            image.config.variant,
            str(raw.get("created") or _base_time()),
            raw.get("author") if isinstance(raw.get("author"), str) else None,
        )

    # -- one instruction ------------------------------------------------------------------

    def _step(self, df: Dockerfile, stage: Stage, ins: Instruction, total: int) -> None:
        self.steps += 1
        self.say(f"STEP {self.steps}/{total}: {ins.original}")
        handler: Callable[[Dockerfile, Stage, Instruction], None] = getattr(
            self, f"_ins_{ins.keyword.lower()}"
        )
        handler(df, stage, ins)

    def _record(self, stage: Stage, created_by: str, empty: bool = True) -> None:
        entry: dict[str, Any] = {"created": stage.created, "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        entry["comment"] = "pyreg build"
        stage.history.append(entry)

    def _arg_pairs(
        self, df: Dockerfile, ins: Instruction, scope: dict[str, str]
    ) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        # one pass, as the frontend does: split and substitute together, so an escaped `\$`
        # inside quotes stays a literal dollar instead of being substituted by a second pass
        for word in self._words(df, ins, scope):
            name, sep, value = word.partition("=")
            if not name or not name.replace("_", "a").isalnum():
                raise df.error(ins, f"invalid ARG name {name!r}")
            out.append((name, value if sep else None))
        return out

    def _ins_arg(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        global_defaults = {
            "TARGETPLATFORM": f"{stage.os}/{stage.architecture}",
            "TARGETOS": stage.os,
            "TARGETARCH": stage.architecture,
            "BUILDPLATFORM": f"{self.host.os}/{self.host.architecture}",
            "BUILDOS": self.host.os,
            "BUILDARCH": self.host.architecture,
        }
        for name, value in self._arg_pairs(df, ins, stage.substitution()):
            if name in self.opts.build_args:
                stage.args[name] = self.opts.build_args[name]
            elif value is not None:
                stage.args[name] = value
            elif name in self._global_args:
                stage.args[name] = self._global_args[name]
            elif name in global_defaults:
                stage.args[name] = global_defaults[name]
            else:
                stage.args.setdefault(name, "")
        self._record(stage, f"ARG {ins.raw}")

    @property
    def _global_args(self) -> dict[str, str]:
        assert self.df is not None
        out: dict[str, str] = {}
        for ins in self.df.instructions:
            if ins.keyword != "ARG":
                break
            for name, value in self._arg_pairs(self.df, ins, out):
                out[name] = self.opts.build_args.get(name, value or "")
        return out

    def _pairs(
        self, df: Dockerfile, ins: Instruction, env: dict[str, str]
    ) -> list[tuple[str, str]]:
        """`K=V ...` pairs, or the legacy `K V` form (the rest of the line is the value)."""
        raw_words = split_words(ins.raw, {}, df.escape, substitute=False)
        if raw_words and "=" not in raw_words[0]:
            key, _, rest = ins.raw.partition(" ")
            rest = rest.strip()
            if not rest:
                raise df.error(ins, "requires a value: KEY VALUE or KEY=VALUE")
            return [(key, self._expand(df, ins, rest, env))]
        out: list[tuple[str, str]] = []
        for word in self._words(df, ins, env):
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise df.error(ins, f"expects KEY=VALUE, got {word!r}")
            out.append((key, value))
        return out

    def _ins_env(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        env = stage.env()
        pairs = self._pairs(df, ins, stage.substitution())
        env.update(pairs)
        stage.config["Env"] = [f"{k}={v}" for k, v in env.items()]
        self._record(stage, "ENV " + " ".join(f"{k}={v}" for k, v in pairs))

    def _ins_label(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        labels = dict(stage.config.get("Labels") or {})
        for key, value in self._pairs(df, ins, stage.substitution()):
            labels[key] = value
        stage.config["Labels"] = labels
        self._record(stage, f"LABEL {ins.raw}")

    def _ins_maintainer(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.author = self._expand(df, ins, ins.raw, stage.substitution())
        self._record(stage, f"MAINTAINER {stage.author}")

    def _ins_expose(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        ports = dict(stage.config.get("ExposedPorts") or {})
        for word in self._words(df, ins, stage.substitution()):
            port, _, proto = word.partition("/")
            proto = (proto or "tcp").lower()
            if not port.replace("-", "").isdigit() or proto not in ("tcp", "udp", "sctp"):
                raise df.error(ins, f"invalid port {word!r}")
            ports[f"{port}/{proto}"] = {}
        stage.config["ExposedPorts"] = ports
        self._record(stage, f"EXPOSE {ins.raw}")

    def _ins_volume(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        volumes = dict(stage.config.get("Volumes") or {})
        for word in self._words(df, ins, stage.substitution()):
            if not word:
                raise df.error(ins, "VOLUME specified can not be an empty string")
            volumes[word] = {}
        stage.config["Volumes"] = volumes
        self._record(stage, f"VOLUME {ins.raw}")

    def _command(self, stage: Stage, ins: Instruction) -> list[str]:
        if ins.exec_form is not None:
            return list(ins.exec_form)
        return [*stage.shell, ins.raw]

    def _ins_cmd(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.config["Cmd"] = self._command(stage, ins)
        stage.cmd_set = True
        self._record(stage, f"CMD {json.dumps(stage.config['Cmd'])}")

    def _ins_entrypoint(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.config["Entrypoint"] = self._command(stage, ins)
        if not stage.cmd_set:  # as Docker: an inherited CMD does not outlive a new ENTRYPOINT
            stage.config["Cmd"] = None
        self._record(stage, f"ENTRYPOINT {json.dumps(stage.config['Entrypoint'])}")

    def _ins_user(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.config["User"] = self._expand(df, ins, ins.raw, stage.substitution())
        self._record(stage, f"USER {stage.config['User']}")

    def _ins_shell(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.config["Shell"] = list(ins.exec_form or [])
        self._record(stage, f"SHELL {json.dumps(stage.config['Shell'])}")

    def _ins_stopsignal(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.config["StopSignal"] = self._expand(df, ins, ins.raw, stage.substitution())
        self._record(stage, f"STOPSIGNAL {stage.config['StopSignal']}")

    def _ins_onbuild(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        stage.config["OnBuild"] = [*(stage.config.get("OnBuild") or []), ins.raw]
        self._record(stage, f"ONBUILD {ins.raw}")

    def _ins_healthcheck(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        kind, _, rest = ins.raw.partition(" ")
        if kind.upper() == "NONE":
            stage.config["Healthcheck"] = {"Test": ["NONE"]}
        else:
            rest = rest.strip()
            form = None
            if rest.startswith("["):
                try:
                    form = json.loads(rest)
                except ValueError:
                    form = None
            test = ["CMD", *form] if isinstance(form, list) else ["CMD-SHELL", rest]
            check: dict[str, Any] = {"Test": test}
            for flag, key in (
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start-period", "StartPeriod"),
                ("start-interval", "StartInterval"),
            ):
                if flag in ins.flags:
                    check[key] = _duration_ns(df, ins, ins.flags[flag])
            if "retries" in ins.flags:
                if not ins.flags["retries"].isdigit():
                    raise df.error(ins, "--retries must be a number")
                check["Retries"] = int(ins.flags["retries"])
            stage.config["Healthcheck"] = check
        self._record(stage, f"HEALTHCHECK {ins.raw}")

    # -- filesystem steps ------------------------------------------------------------------

    def _config_view(self, stage: Stage) -> list[Any]:
        c = stage.config
        return [c.get("Env"), c.get("User"), c.get("WorkingDir"), c.get("Shell")]

    def _fs_step(
        self,
        stage: Stage,
        created_by: str,
        key_parts: list[Any],
        mutate: Callable[[Path], None],
        keep_empty: bool,
    ) -> None:
        key = cache_key([str(stage.top), self._config_view(stage), *key_parts])
        hit = None if self.opts.no_cache else self.cache.get(key, stage.top)
        if hit is not None:
            self.cached += 1
            self.say("--> Using cache")
            if hit.layer is not None:
                layer = hit.layer
                stage.layers.append(
                    LayerRef(layer.diff_id, layer.digest, layer.size, layer.media_type)
                )
            stage.created = hit.created
            self._record(stage, created_by, empty=hit.layer is None)
            return
        work = self.store.root / "build"
        work.mkdir(parents=True, exist_ok=True)
        bundle = Path(tempfile.mkdtemp(dir=work, prefix="step-"))
        try:
            mode = rootfs.prepare(self.store, stage.chains, bundle)
            before = snapshot(bundle / "rootfs") if mode == "copy" else None
            mutate(bundle)
            if before is None:
                rootfs.unmount(bundle / "rootfs")
                changes = changes_from_upper(bundle / "diff")
            else:
                changes = changes_between(before, bundle / "rootfs")
            stage.created = _now()
            if not changes and not keep_empty:
                self.cache.put(key, CachedStep(None, stage.created))
                self._record(stage, created_by, empty=True)
                return
            built = store_layer(self.store, stage.top, changes, self.opts.compression, _epoch())
        finally:
            rootfs.unmount(bundle / "rootfs")
            force_rmtree(bundle)
        stage.layers.append(LayerRef(built.diff_id, built.digest, built.size, built.media_type))
        layer = CachedLayer(built.diff_id, built.digest, built.size, built.media_type)
        self.cache.put(key, CachedStep(layer, stage.created))
        self._record(stage, created_by, empty=False)

    def _workdir(self, stage: Stage) -> str:
        return str(stage.config.get("WorkingDir") or "") or "/"

    def _ins_workdir(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        path = self._expand(df, ins, ins.raw, stage.substitution())
        path = posixpath.normpath(posixpath.join(self._workdir(stage), path))
        stage.config["WorkingDir"] = path

        def mkdir(bundle: Path) -> None:
            root = bundle / "rootfs"
            if resolve_in_root(root, path) is None:
                applier = Applier(root)
                applier.ensure_dir(path.strip("/"))
                applier.finish()

        self._fs_step(stage, f"WORKDIR {path}", ["WORKDIR", path], mkdir, keep_empty=False)

    def _runc_for_build(self) -> Runc:
        if self._runc is None:
            check_privileges()
            self._runc = Runc(self.store.root / "runc")
        return self._runc

    def _ins_run(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        network = ins.flags.get("network", "none")
        if network not in ("none", "host", "default"):
            raise df.error(ins, f"unsupported --network={network}: none or host")
        network = "none" if network == "default" else network
        args = self._command(stage, ins)
        env = dict(stage.args)
        env.update(stage.env())
        env.setdefault("PATH", DEFAULT_PATH)
        runc = self._runc_for_build()
        user_spec = str(stage.config.get("User") or "") or "0"
        cwd = self._workdir(stage)

        def run(bundle: Path) -> None:
            root = bundle / "rootfs"
            try:
                user = resolve_user(root, user_spec)
            except ContainerError as exc:
                raise df.error(ins, str(exc)) from None
            if resolve_in_root(root, cwd) is None:
                applier = Applier(root)
                applier.ensure_dir(cwd.strip("/"))
                applier.finish()
            full_env = [f"{k}={v}" for k, v in env.items()]
            if "HOME" not in env:
                full_env.append(f"HOME={user.home}")
            spec = runtime_spec(
                ProcessSpec(args, full_env, cwd, user.uid, user.gid, user.additional_gids),
                hostname="pyreg-build",
                network=network,
                seccomp=seccomp_filter(),
            )
            (bundle / "config.json").write_text(json.dumps(spec))
            cid = f"pyreg-build-{secrets.token_hex(8)}"
            proc = runc.run(
                cid,
                bundle,
                stdin=subprocess.DEVNULL,
                stdout=self.opts.output,
                stderr=self.opts.output,
            )
            code = proc.wait()
            runc.delete(cid)
            if code != 0:
                raise df.error(
                    ins, f"the command {json.dumps(args)} returned a non-zero code: {code}"
                )

        build_args = sorted(f"{k}={v}" for k, v in stage.args.items())
        self._fs_step(
            stage,
            f"RUN {json.dumps(args) if ins.exec_form else ' '.join(args)}",
            ["RUN", args, network, build_args],
            run,
            keep_empty=True,
        )

    def _ins_copy(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        self._copy(df, stage, ins, add=False)

    def _ins_add(self, df: Dockerfile, stage: Stage, ins: Instruction) -> None:
        self._copy(df, stage, ins, add=True)

    def _source_root(
        self, df: Dockerfile, stage: Stage, ins: Instruction, scratch: Path
    ) -> tuple[Path, Ignore | None]:
        name = ins.flags.get("from")
        if name is None:
            return self.context, self.ignore
        name = self._expand(df, ins, name, stage.substitution())
        chains: list[Digest] | None = None
        for i, earlier in enumerate(self.stages):
            if name.lower() == earlier.name or name == str(i):
                chains = earlier.chains
        if chains is None:
            try:
                chains = resolve_image(
                    self.store, name, platform=self.opts.platform, net=self.opts.net
                ).chains
            except (ContainerError, ReferenceError) as exc:
                raise df.error(ins, f"--from={name}: {exc}") from None
        assemble_rootfs(self.store, chains, scratch)
        return scratch, None

    def _copy(self, df: Dockerfile, stage: Stage, ins: Instruction, add: bool) -> None:
        env = stage.substitution()
        words = self._words(df, ins, env)
        if len(words) < 2:
            raise df.error(ins, "requires at least two arguments, a source and a destination")
        *patterns, dest = words
        dest_dir = dest.endswith("/") or dest.endswith("/.") or len(patterns) > 1
        dest = posixpath.normpath(posixpath.join(self._workdir(stage), dest))
        chown = ins.flags.get("chown")
        chown = self._expand(df, ins, chown, env) if chown else None
        chmod: int | None = None
        if "chmod" in ins.flags:
            try:
                chmod = int(ins.flags["chmod"], 8)
            except ValueError:
                raise df.error(ins, f"invalid --chmod={ins.flags['chmod']}: octal only") from None
        scratch = Path(tempfile.mkdtemp(dir=self.store.root, prefix=".copy-from-"))
        try:
            src_root, ignore = self._source_root(df, stage, ins, scratch)
            sources: list[Source] = []
            for pattern in patterns:
                if add and (pattern.startswith("http://") or pattern.startswith("https://")):
                    raise df.error(ins, "remote URLs are not supported (builds have no network)")
                try:
                    sources.extend(resolve_sources(src_root, pattern, ignore, ins.keyword))
                except BuildError as exc:
                    raise df.error(ins, str(exc).split(": ", 1)[-1]) from None
            if len(sources) > 1:
                dest_dir = True
            listing = [(s, walk(s, src_root, ignore)) for s in sources]
            content = digest_sources(
                [(f"{s.rel}/{r}", p) for s, entries in listing for r, p in entries]
            )

            def apply(bundle: Path) -> None:
                root = bundle / "rootfs"
                uid = gid = 0
                if chown:
                    try:
                        user = resolve_user(root, chown)
                    except ContainerError as exc:
                        raise df.error(ins, str(exc)) from None
                    uid, gid = user.uid, user.gid
                _copy_into(root, listing, dest, dest_dir, uid, gid, chmod, add)

            created_by = f"{ins.keyword} {ins.raw}"
            self._fs_step(
                stage,
                created_by,
                [ins.keyword, patterns, dest, dest_dir, chown, chmod, content],
                apply,
                keep_empty=True,
            )
        finally:
            force_rmtree(scratch)

    # -- the image ------------------------------------------------------------------------

    def _commit(self, stage: Stage) -> BuildResult:
        config: dict[str, Any] = {
            "created": stage.created,
            "architecture": stage.architecture,
            "os": stage.os,
            "config": stage.config,
            "rootfs": {"type": "layers", "diff_ids": [str(x.diff_id) for x in stage.layers]},
            "history": stage.history,
        }
        if stage.variant:
            config["variant"] = stage.variant
        if stage.author:
            config["author"] = stage.author
        config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        config_digest = self.store.content.write_bytes(config_bytes, digest_bytes(config_bytes))
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {
                "mediaType": mt.OCI_CONFIG,
                "digest": str(config_digest),
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": x.media_type, "digest": str(x.digest), "size": x.size}
                for x in stage.layers
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        manifest_digest = self.store.content.write_bytes(
            manifest_bytes, digest_bytes(manifest_bytes)
        )
        names = []
        for tag in self.opts.tags:
            ref = Reference.parse(tag)
            if ref.digest is not None:
                raise BuildError(f"a tag cannot carry a digest: {tag}")
            name = image_name(ref)
            self.store.images.set(name, manifest_digest)
            names.append(name)
        if not names:  # unnamed, as `docker build` without -t: named by its digest
            self.store.images.set(
                f"sha256:{manifest_digest.hex}", manifest_digest
            ) if False else None
        return BuildResult(manifest_digest, config_digest, names, self.steps, self.cached)


def _duration_ns(df: Dockerfile, ins: Instruction, text: str) -> int:
    units = {
        "ns": 1,
        "us": 1_000,
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    }
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(unit)]) * units[unit])
    raise df.error(ins, f"invalid duration {text!r} (e.g. 30s, 1m)")


def _copy_into(
    root: Path,
    listing: list[tuple[Source, list[tuple[str, Path]]]],
    dest: str,
    dest_dir: bool,
    uid: int,
    gid: int,
    chmod: int | None,
    add: bool,
) -> None:
    applier = Applier(root)
    dest_rel = dest.strip("/")
    if not dest_dir and len(listing) == 1 and not listing[0][0].path.is_dir():
        existing = resolve_in_root(root, dest)
        if existing is not None and existing.is_dir():
            dest_dir = True
    for source, entries in listing:
        if add and source.path.is_file() and tarfile.is_tarfile(source.path):
            _extract(applier, source.path, dest_rel)
            continue
        if source.path.is_dir():
            base = dest_rel
        elif dest_dir:
            base = posixpath.join(dest_rel, posixpath.basename(source.rel) or source.path.name)
        else:
            base = dest_rel
        for rel, path in entries:
            target = posixpath.join(base, rel) if rel else base
            st = os.lstat(path)
            mode = st.st_mode & 0o7777
            if chmod is not None:
                mode = chmod
            if os.path.isdir(path) and not os.path.islink(path):
                if not target:
                    continue  # the root itself keeps its metadata
                if not rel and resolve_in_root(root, "/" + target) is not None:
                    applier.ensure_dir(target)  # an existing destination keeps its own
                    continue
                applier.directory(Entry(target, "dir", mode, uid, gid, st.st_mtime))
            elif os.path.islink(path):
                applier.apply(
                    Entry(target, "symlink", 0o777, uid, gid, st.st_mtime, os.readlink(path))
                )
            elif os.path.isfile(path):
                applier.apply(Entry(target, "file", mode, uid, gid, st.st_mtime), path)
    if dest_dir and dest_rel:
        applier.ensure_dir(dest_rel)
    applier.finish()


def _extract(applier: Applier, archive: Path, dest_rel: str) -> None:
    """ADD of a local tar archive (plain, gzip, bzip2, xz): its entries under `dest`."""
    if dest_rel:
        applier.ensure_dir(dest_rel)
    hardlinks: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:
            name = clean_name(member.name)
            if not name:
                continue
            member.name = posixpath.join(dest_rel, name) if dest_rel else name
            if member.islnk():
                link = clean_name(member.linkname)
                member.linkname = posixpath.join(dest_rel, link) if dest_rel else link
            apply_tar_member(applier, tf, member, hardlinks)
