"""Offline checks of the container image's recipe: Dockerfile and .dockerignore.

The Dockerfile is read with dockerfile-parse (the parser OpenShift's build
tooling uses); .dockerignore is matched with Docker's own rules (last matching
pattern wins, `!` re-includes, a pattern also matches a file's parent folders).
Prints one line per verified fact; exits 1 naming the file and the problem.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

from report import ROOT, Report

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_COMMAND = "cargo build --release --locked --bin herald"
# Debian release of each codename: the builder's glibc must not be newer than the runtime's.
DEBIAN_RELEASES = {"bullseye": 11, "bookworm": 12, "trixie": 13, "forky": 14}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PRIVATE|API_KEY|CREDENTIAL", re.IGNORECASE)
SECRET_VALUE = re.compile(r"whsec_|-----BEGIN|://[^/\s:@]+:[^/\s@]+@")
# Docker's PATH when the Dockerfile sets none.
ENV_PATH_DEFAULT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SECRET_FILE = re.compile(r"(^|/)(\.env[^/]*|id_rsa[^/]*|[^/]*\.(pem|key|p12|pfx))$")


@dataclass
class Instruction:
    name: str
    value: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]

    def last(self, name: str) -> Instruction | None:
        found = self.all(name)
        return found[-1] if found else None


def stages_of(parser: DockerfileParser) -> list[Stage]:
    stages: list[Stage] = []
    for item in parser.structure:
        name, value, line = item["instruction"], item["value"], item["startline"] + 1
        if name == "COMMENT":
            continue
        if name == "FROM":
            words = value.split()
            alias = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(image=words[0], name=alias, line=line))
        elif stages:
            stages[-1].instructions.append(Instruction(name, value, line))
    return stages


def exec_form(value: str) -> list[str] | None:
    """The JSON (exec) form of ENTRYPOINT/CMD, or None for the shell form."""
    try:
        words = json.loads(value)
    except json.JSONDecodeError:
        return None
    return words if isinstance(words, list) else None


def copy_args(value: str) -> tuple[dict[str, str], list[str], str]:
    """COPY/ADD flags, sources and destination (shell or JSON form)."""
    words = shlex.split(value)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, flag_value = words.pop(0)[2:].partition("=")
        flags[key] = flag_value
    if len(words) == 1 and words[0].startswith("["):
        words = json.loads(words[0])
    return flags, words[:-1], words[-1]


class DockerIgnore:
    """Docker's .dockerignore semantics (moby/patternmatcher), enough for these checks."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            line = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
            self.patterns.append((exclusion, re.compile(self._regex(line))))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "^", 0
        while i < len(pattern):
            c = pattern[i]
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif c == "*":
                out, i = out + "[^/]*", i + 1
            elif c == "?":
                out, i = out + "[^/]", i + 1
            elif c == "[":
                end = pattern.index("]", i)
                members = pattern[i + 1 : end]
                if members.startswith("!"):
                    members = "^" + members[1:]
                out, i = out + "[" + members + "]", end + 1
            else:
                out, i = out + re.escape(c), i + 1
        return out + "$"

    def excluded(self, path: str) -> bool:
        parents = path.split("/")[:-1]
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        excluded = False
        for exclusion, regex in self.patterns:
            if any(regex.match(p) for p in [path, *prefixes]):
                excluded = not exclusion
        return excluded


def files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def check_stages(report: Report, stages: list[Stage]) -> bool:
    named = [s.name for s in stages if s.name]
    return report.check(
        len(stages) >= 2 and len(named) == len(stages) and len(set(named)) == len(named),
        DOCKERFILE,
        f"multi-stage, every stage named: {', '.join(named)}",
        "expected two or more stages, each with a unique `AS name`",
    )


def check_rust_version(report: Report, build: Stage) -> None:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]
    needed = tuple(int(x) for x in cargo["rust-version"].split("."))
    match = re.fullmatch(r"(?:docker\.io/library/)?rust:(\d+)\.(\d+)(?:\.(\d+))?-.*", build.image)
    if not report.check(
        match is not None,
        DOCKERFILE,
        f"build stage `{build.name}` is the official rust image pinned to a version ({build.image})",
        f"line {build.line}: build stage image {build.image!r} is not rust:<major>.<minor>[.<patch>]-<variant>",
    ):
        return
    have = tuple(int(x or 0) for x in match.groups())
    report.check(
        have >= needed + (0,) * (3 - len(needed)),
        DOCKERFILE,
        f"Rust {'.'.join(map(str, have))} satisfies rust-version {cargo['rust-version']} in Cargo.toml",
        f"line {build.line}: Rust {'.'.join(map(str, have))} is older than Cargo.toml's rust-version {cargo['rust-version']}",
    )


def debian_release(image: str) -> int | None:
    for codename, release in DEBIAN_RELEASES.items():
        if codename in image:
            return release
    match = re.search(r"debian:(\d+)", image) or re.search(r"-debian(\d+)", image)
    return int(match.group(1)) if match else None


def check_glibc(report: Report, build: Stage, final: Stage) -> None:
    built_on, runs_on = debian_release(build.image), debian_release(final.image)
    report.check(
        built_on is not None and built_on == runs_on,
        DOCKERFILE,
        f"builder and runtime are the same Debian release ({built_on}): the binary's glibc is there",
        f"builder {build.image!r} (Debian {built_on}) and runtime {final.image!r} (Debian {runs_on}) "
        "must be the same Debian release",
    )


def check_pinned(report: Report, stages: list[Stage]) -> None:
    for stage in stages:
        image = stage.image
        tag = image.split("@")[0].rpartition(":")[2] if ":" in image.split("/")[-1] else ""
        report.check(
            ("@sha256:" in image) or (tag != "" and tag != "latest" and any(ch.isdigit() for ch in tag)),
            DOCKERFILE,
            f"stage `{stage.name}` base image pinned: {image}",
            f"line {stage.line}: base image {image!r} is not pinned to a versioned tag or digest",
        )


def check_build(report: Report, stages: list[Stage], final: Stage) -> None:
    by_name = {s.name: s for s in stages}
    copies = [i for i in final.instructions if i.name in ("COPY", "ADD")]
    binaries = []
    for copy in copies:
        flags, sources, dest = copy_args(copy.value)
        if "from" in flags:
            binaries.append((copy, flags["from"], sources, dest))
    if not report.check(
        len(binaries) == 1,
        DOCKERFILE,
        "the final stage copies one thing from a build stage",
        f"the final stage should COPY --from=<build stage> the herald binary once, found {len(binaries)}",
    ):
        return
    copy, source_stage, sources, dest = binaries[0]
    stage = by_name.get(source_stage)
    if not report.check(
        stage is not None and stages.index(stage) < stages.index(final),
        DOCKERFILE,
        f"COPY --from={source_stage} names an earlier stage",
        f"line {copy.line}: COPY --from={source_stage} names no earlier stage",
    ):
        return
    workdir = stage.last("WORKDIR")
    built = posixpath.join(workdir.value if workdir else "/", "target/release/herald")
    builds = [i for i in stage.all("RUN") if BUILD_COMMAND in i.value]
    last_copy = max((i.line for i in stage.instructions if i.name in ("COPY", "ADD")), default=0)
    report.check(
        any(i.line > last_copy for i in builds),
        DOCKERFILE,
        f"stage `{stage.name}` runs `{BUILD_COMMAND}` after copying the sources",
        f"stage `{stage.name}` never runs `{BUILD_COMMAND}` after its last COPY",
    )
    report.check(
        sources == [built],
        DOCKERFILE,
        f"the binary copied is the one built: {built}",
        f"line {copy.line}: copies {sources} from `{stage.name}`, but `{BUILD_COMMAND}` in WORKDIR "
        f"{workdir.value if workdir else '/'} writes {built}",
    )
    path = ENV_PATH_DEFAULT
    for env in final.all("ENV"):
        if env.value.startswith("PATH="):
            path = env.value.partition("=")[2]
    report.check(
        posixpath.dirname(dest.rstrip("/")) in path.split(":") or dest.rstrip("/") in path.split(":"),
        DOCKERFILE,
        f"herald lands on PATH: {dest}",
        f"line {copy.line}: {dest} is not in a PATH directory ({path})",
    )


def check_context_sources(report: Report, stages: list[Stage], ignore: DockerIgnore) -> None:
    for stage in stages:
        for copy in (i for i in stage.instructions if i.name in ("COPY", "ADD")):
            flags, sources, _ = copy_args(copy.value)
            if "from" in flags:
                continue
            for source in sources:
                if re.match(r"[a-z]+://", source):
                    report.fail(
                        DOCKERFILE,
                        f"line {copy.line}: {copy.name} fetches {source}: copy from the repository",
                    )
                    continue
                path = ROOT / source
                files = files_under(path) if path.exists() else []
                if not report.check(
                    bool(files),
                    DOCKERFILE,
                    f"{copy.name} {source} (line {copy.line}) exists in the repository",
                    f"line {copy.line}: {copy.name} source {source!r} does not exist in the repository",
                ):
                    continue
                hidden = [f for f in files if ignore.excluded(f.relative_to(ROOT).as_posix())]
                report.check(
                    not hidden,
                    DOCKERFILE,
                    f"{source}: all {len(files)} file(s) reach the build context",
                    f"line {copy.line}: .dockerignore keeps {len(hidden)} file(s) of {source!r} out of the "
                    f"build context, e.g. {hidden[0].relative_to(ROOT) if hidden else ''}",
                )
                secret = [f for f in files if SECRET_FILE.search(f.relative_to(ROOT).as_posix())]
                report.check(
                    not secret,
                    DOCKERFILE,
                    f"{source}: no key or .env file copied into the image",
                    f"line {copy.line}: copies what looks like a secret: {secret[0].relative_to(ROOT) if secret else ''}",
                )


def check_final(report: Report, final: Stage, parser: DockerfileParser) -> None:
    user = final.last("USER")
    uid, _, gid = (user.value.strip() if user else "").partition(":")
    report.check(
        user is not None
        and uid.isdigit()
        and int(uid) != 0
        and (gid == "" or (gid.isdigit() and int(gid) != 0)),
        DOCKERFILE,
        f"final stage runs as a numeric non-root user ({user.value if user else '-'})",
        f"final stage USER is {user.value if user else 'unset (root)'}: use a numeric, non-zero UID[:GID]",
    )
    entrypoint = final.last("ENTRYPOINT")
    words = exec_form(entrypoint.value) if entrypoint else None
    report.check(
        words is not None and len(words) >= 1 and posixpath.basename(words[0]) == "herald",
        DOCKERFILE,
        f"ENTRYPOINT is herald in exec form ({entrypoint.value if entrypoint else '-'})",
        f'ENTRYPOINT must be the exec form ["herald", ...], found {entrypoint.value if entrypoint else "none"}',
    )
    cmd = final.last("CMD")
    cmd_words = exec_form(cmd.value) if cmd else None
    report.check(
        cmd_words is not None and cmd_words[:1] == ["serve"],
        DOCKERFILE,
        f"CMD is serve in exec form ({cmd.value if cmd else '-'})",
        f'CMD must be the exec form ["serve", ...], found {cmd.value if cmd else "none"}',
    )
    listen = parser.envs.get("HERALD__API__LISTEN", "")
    host, _, port = listen.rpartition(":")
    report.check(
        host in ("0.0.0.0", "[::]") and port.isdigit(),
        DOCKERFILE,
        f"HERALD__API__LISTEN={listen}: reachable from outside the container",
        f"set ENV HERALD__API__LISTEN=0.0.0.0:<port> (found {listen or 'unset'}; 127.0.0.1 is unreachable in a container)",
    )
    exposed = {p.split("/")[0] for e in final.all("EXPOSE") for p in e.value.split()}
    report.check(
        port in exposed,
        DOCKERFILE,
        f"EXPOSE includes the API port {port}",
        f"EXPOSE {sorted(exposed) or 'nothing'} lacks the API port {port or '?'} of HERALD__API__LISTEN",
    )
    labels = parser.labels
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    wanted = [
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    ]
    missing = [w for w in wanted if not labels.get(w)]
    report.check(
        not missing,
        DOCKERFILE,
        f"OCI labels: {', '.join(sorted(k.rsplit('.', 1)[1] for k in labels if k.startswith('org.opencontainers.')))}",
        f"missing OCI labels: {', '.join(missing)}",
    )
    report.check(
        labels.get("org.opencontainers.image.version") == version,
        DOCKERFILE,
        f"image version label matches Cargo.toml ({version})",
        f"org.opencontainers.image.version is {labels.get('org.opencontainers.image.version')!r}, Cargo.toml says {version!r}",
    )


def check_secrets(report: Report, stages: list[Stage]) -> None:
    problems = []
    for stage in stages:
        for i in stage.instructions:
            if i.name not in ("ENV", "ARG", "LABEL"):
                continue
            for word in shlex.split(i.value):
                key, _, value = word.partition("=")
                if SECRET_NAME.search(key) or SECRET_VALUE.search(value):
                    problems.append(f"line {i.line}: {i.name} {key}")
    report.check(
        not problems,
        DOCKERFILE,
        "no token, password or signing secret in ENV, ARG or LABEL",
        "secrets must come at run time, not from the image: " + "; ".join(problems),
    )
    defaults = tomllib.loads((ROOT / "config/herald.toml").read_text())
    report.check(
        defaults["api"]["token"] == "",
        ROOT / "config/herald.toml",
        "the config file baked into the image has an empty api.token",
        "api.token must stay empty in the file the image copies: set it at run time (HERALD__API__TOKEN)",
    )


def check_dockerignore(report: Report, ignore: DockerIgnore) -> None:
    for kept in ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs", "config/herald.toml"]:
        report.check(
            not ignore.excluded(kept),
            DOCKERIGNORE,
            f"keeps {kept}",
            f"excludes {kept}, which the build needs",
        )
    for dropped in ["target/release/herald", ".git/HEAD", "fuzz/target/x", ".env"]:
        report.check(
            ignore.excluded(dropped),
            DOCKERIGNORE,
            f"leaves out {dropped}",
            f"lets {dropped} into the build context",
        )


def main() -> int:
    report = Report()
    for path in (DOCKERFILE, DOCKERIGNORE):
        if not path.is_file():
            report.fail(path, "missing")
    if report.failures:
        return 1
    parser = DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))
    ignore = DockerIgnore(DOCKERIGNORE.read_text())
    stages = stages_of(parser)
    if check_stages(report, stages):
        final = stages[-1]
        build = next((s for s in stages if any(BUILD_COMMAND in i.value for i in s.all("RUN"))), None)
        if report.check(
            build is not None and build is not final,
            DOCKERFILE,
            f"stage `{build.name if build else '?'}` builds herald, the final stage `{final.name}` only runs it",
            f"no stage before the last runs `{BUILD_COMMAND}`",
        ):
            check_rust_version(report, build)
            check_glibc(report, build, final)
            check_build(report, stages, final)
        check_pinned(report, stages)
        check_context_sources(report, stages, ignore)
        check_final(report, final, parser)
        check_secrets(report, stages)
    check_dockerignore(report, ignore)
    return report.finish("check_container")


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
