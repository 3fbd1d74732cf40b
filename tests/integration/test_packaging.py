"""The Docker image's paths, checked without a Docker engine.

The wheel is built the way the Dockerfile's build stage builds it, from exactly
the files the build context sends (.dockerignore applied) and the build stage
COPYs; it is installed into a fresh venv that sees only the wheel and the
runtime dependencies it declares (copied from this venv, so no index is
needed); then every path the runtime stage relies on is run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from xcon.health import HealthFile
from xcon.testing.loopback import new_host

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

pytestmark = pytest.mark.timeout(180)


# -- Dockerfile ---------------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages of a Dockerfile: (keyword, arguments) per instruction, continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = args.split()
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, base))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """An instruction's arguments as a list: JSON (exec form) or a shell command."""
    if args.startswith("["):
        return json.loads(args)
    return ["/bin/sh", "-c", args]


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY's --flags, sources and destination."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words[:-1], words[-1]


def read_stages() -> tuple[Stage, Stage]:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    assert len(stages) >= 2, "the Dockerfile is multi-stage: a build stage and a runtime stage"
    return stages[0], stages[-1]


# -- build context ------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str], str]]:
    rules = []
    path = ROOT / ".dockerignore"
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(out + r"\Z"), pattern))
    return rules


def ignored(rel: str, rules) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negate, regex, _ in rules:
        if any(regex.match(p) for p in prefixes):
            verdict = not negate
    return verdict


def build_context(dest: Path) -> None:
    """Copy what ``docker build .`` would send (per .dockerignore) to dest."""
    rules = dockerignore_rules()
    negations = [p for neg, _, p in rules if neg]
    for dirpath, dirnames, filenames in os.walk(ROOT):
        reldir = os.path.relpath(dirpath, ROOT)
        reldir = "" if reldir == "." else reldir
        keep = []
        for d in dirnames:
            rel = f"{reldir}/{d}" if reldir else d
            if d == ".git" or (
                ignored(rel, rules) and not any(n.startswith(rel) or "*" in n for n in negations)
            ):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            rel = f"{reldir}/{f}" if reldir else f
            if not ignored(rel, rules):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)


def apply_copies(stage: Stage, context: Path, root: Path) -> None:
    """Carry out a stage's COPY instructions from the context into root (its filesystem)."""
    workdir = "/"
    for keyword, args in stage.instructions:
        if keyword == "WORKDIR":
            workdir = os.path.join(workdir, args)
        if keyword != "COPY":
            continue
        flags, sources, dest = copy_args(args)
        if "from" in flags:
            continue
        dest_path = root / os.path.join(workdir, dest).lstrip("/")
        into_dir = dest.endswith("/") or len(sources) > 1
        for src in sources:
            src_path = context / src
            assert src_path.exists(), f"COPY {src}: not in the build context"
            if src_path.is_dir():
                shutil.copytree(src_path, dest_path, dirs_exist_ok=True)
            else:
                target = dest_path / src_path.name if into_dir else dest_path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src_path, target)


# -- the wheel, installed in a fresh venv -------------------------------------------


def clean_env(venv: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XCON_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def runtime_requirements(requires: list[str]) -> list[Requirement]:
    """The requirements that apply here without extras."""
    out = []
    for text in requires:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req)
    return out


def copy_distribution(name: str, site: Path, done: set[str]) -> None:
    """Install an installed distribution and its dependencies into another site-packages.

    Its files are copied from this venv: no index is needed, and the fresh venv
    gets nothing the wheel does not ask for.
    """
    dist = metadata.distribution(name)
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in done:
        return
    done.add(key)
    for f in dist.files or ():
        src = Path(dist.locate_file(f)).resolve()
        if f.parts[0] == ".." or not src.is_file():
            continue
        target = site / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    for req in runtime_requirements(dist.requires or []):
        copy_distribution(req.name, site, done)


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return runtime_requirements(
        [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The wheel built as the Dockerfile builds it, installed into a fresh venv."""
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler (gcc): the wheel's native module cannot be built")
    build, runtime = read_stages()
    tmp = tmp_path_factory.mktemp("image")
    context = tmp / "context"
    build_context(context)
    fs = tmp / "build-fs"
    apply_copies(build, context, fs)
    workdir = build.last("WORKDIR") or "/"
    src = fs / workdir.lstrip("/")
    wheels = tmp / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), "."],
        cwd=src,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert r.returncode == 0, f"pip wheel failed:\n{r.stdout}\n{r.stderr}"
    (wheel,) = wheels.glob("xcon-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q"]
        + ["--no-index", "--no-deps", str(wheel)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, f"installing the wheel failed:\n{r.stdout}\n{r.stderr}"
    site = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    done: set[str] = set()
    for req in wheel_requirements(wheel):
        copy_distribution(req.name, site, done)
    rootfs = tmp / "rootfs"
    apply_copies(runtime, context, rootfs)
    return {
        "wheel": wheel,
        "venv": venv,
        "python": py,
        "rootfs": rootfs,
        "build": build,
        "runtime": runtime,
    }


# -- tests ----------------------------------------------------------------------------


def test_dockerfile_shape():
    build, runtime = read_stages()
    assert any(
        re.search(r"\bpip wheel\b.*\s'?\.(\[[\w,]+\])?'?(\s|$)", run) for run in build.all("RUN")
    ), "the build stage builds the wheel with `pip wheel .`"
    for stage in (build, runtime):
        assert re.search(r"bookworm", stage.base), f"{stage.base}: not Debian bookworm"
    assert "slim" in runtime.base, f"{runtime.base}: the runtime image is a slim one"
    assert not any("gcc" in run for run in runtime.all("RUN")), "no compiler in the runtime stage"
    runs = " ".join(runtime.all("RUN"))
    for package in ("iproute2", "iputils-ping", "tcpdump"):
        assert re.search(rf"\b{package}\b", runs), f"runtime installs {package} as upstream"
    assert any("--from=" in c for c in runtime.all("COPY")), "runtime takes the built wheel"
    assert exec_form(runtime.last("ENTRYPOINT") or "") == ["/xcon.py"]
    assert runtime.last("WORKDIR") == "/", "WORKDIR / so the default health file is /health"
    assert runtime.last("CMD") is None, "no CMD: arguments go straight to xcon as upstream"


def test_dockerignore_sends_sources_but_no_build_products(tmp_path):
    build_context(tmp_path)
    sent = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    for needed in ("pyproject.toml", "setup.py", "README.md", "xcon/main.py", "docker/xcon.py"):
        assert needed in sent
    assert any(s.startswith("native/") and s.endswith(".c") for s in sent)
    leaked = [s for s in sent if re.search(r"(^|/)(\.venv|\.git|build|__pycache__)/|\.so$", s)]
    assert not leaked, f"the build context carries local build products: {leaked[:5]}"


def test_wheel_has_native_module_and_console_script(image):
    with zipfile.ZipFile(image["wheel"]) as z:
        names = z.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert re.search(r"^xcon\s*=\s*xcon\.main:main$", z.read(entry_points).decode(), re.M)
    assert [n for n in names if re.fullmatch(r"xcon/_native[^/]*\.so", n)], names
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requires = wheel_requirements(image["wheel"])
    assert sorted(str(r) for r in requires) == sorted(str(Requirement(d)) for d in declared)
    assert "cffi" in {r.name for r in requires}, "the native module is loaded through cffi"
    console = image["venv"] / "bin" / "xcon"
    assert console.is_file() and os.access(console, os.X_OK)
    r = subprocess.run(
        [str(console), "--version"], capture_output=True, text=True, env=clean_env(), cwd="/"
    )
    assert r.returncode == 0, r.stderr
    assert "fast path: native" in r.stdout


def test_installed_from_the_wheel_not_the_checkout(image):
    r = subprocess.run(
        [
            str(image["python"]),
            "-c",
            "import xcon, xcon.native as n; print(xcon.__file__); print(n.BACKEND)",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd="/",
    )
    assert r.returncode == 0, r.stderr
    where, backend = r.stdout.split()
    assert Path(where).is_relative_to(image["venv"]), where
    assert backend == "native"
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(image["python"]), "check"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert check.returncode == 0, f"missing runtime dependencies:\n{check.stdout}"


def runtime_copies(runtime: Stage) -> dict[str, str]:
    """Image path -> repository path, for the runtime stage's COPYs from the context."""
    out = {}
    for args in runtime.all("COPY"):
        flags, sources, dest = copy_args(args)
        if "from" not in flags and len(sources) == 1 and not dest.endswith("/"):
            out[dest] = sources[0]
    return out


@pytest.mark.parametrize("path", ["/xcon.py", "/xcon"])
def test_entrypoints_run_the_installed_xcon(image, path):
    """Laid out as in the image (both in /, the working directory) and run through the shebang."""
    copies = runtime_copies(image["runtime"])
    assert path in copies, f"the runtime stage puts {path} in the image"
    assert (ROOT / copies[path]).is_file(), f"{copies[path]} is not in the repository"
    script = image["rootfs"] / path.lstrip("/")
    executable = script.stat().st_mode & stat.S_IXUSR or any(
        path in run and "chmod" in run for run in image["runtime"].all("RUN")
    )
    assert executable, f"{path} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env python3\n")
    os.chmod(script, 0o755)
    r = subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        env=clean_env(image["venv"]),
        cwd=image["rootfs"],
    )
    assert r.returncode == 0, r.stderr
    assert "fast path: native" in r.stdout, r.stdout


def test_entrypoint_default_health_file_is_in_the_workdir(image):
    """With WORKDIR /, the default health file ./health is /health, which HEALTHCHECK reads."""
    rootfs = image["rootfs"]
    script = rootfs / "xcon.py"
    os.chmod(script, 0o755)
    host = new_host()
    proc = subprocess.Popen(
        [str(script), "--p2p", f"{host}/1--{host}/2"],
        cwd=rootfs,
        env=clean_env(image["venv"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = rootfs / "health"
        deadline = time.monotonic() + 15
        while not health.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert health.exists(), "no ./health written"
        assert health.read_text().splitlines()[0] == "1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def healthcheck_command(runtime: Stage) -> list[str]:
    hc = runtime.last("HEALTHCHECK")
    assert hc, "the image has a HEALTHCHECK"
    m = re.search(r"(?:^|\s)CMD\s+(.*)$", hc)
    assert m, hc
    return exec_form(m.group(1))


@pytest.mark.parametrize(
    "content, healthy",
    [
        (None, False),
        ("0\nAll 2 sockets connected\n", True),
        ("1\nExpected 2 sockets but only 1 connected\n", False),
        ("", False),
    ],
)
def test_healthcheck_reads_health_file(tmp_path, content, healthy):
    cmd = healthcheck_command(read_stages()[1])
    assert any("/health" in word for word in cmd), "the health check reads /health"
    health = tmp_path / "health"
    if content is not None:
        health.write_text(content)
    r = subprocess.run(
        [word.replace("/health", str(health)) for word in cmd],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (r.returncode == 0) == healthy, (r.returncode, r.stdout, r.stderr)
    if content:
        assert content.splitlines()[1] in r.stdout, "the message shows in docker inspect"


#: vrnetlab's own health check of a router container, the answer the image's must give.
UPSTREAM_HEALTHCHECK = ["/bin/sh", "-c", "sed 1d /health; exit $(head -n1 /health)"]


def xcon_health_files(tmp: Path) -> list[str]:
    """Every health file xcon writes, written by xcon's own HealthFile.

    Each state of every mode (p2p/hub: M of N connected; tap/raw: ready or not,
    client or not) for a few sizes, then the file xcon leaves when it ends.
    """
    texts: list[str] = []
    path = tmp / "written"
    for total in (1, 2, 3, 250, 1000):
        for connected in sorted({0, 1, total - 1, total} & set(range(total + 1))):
            for ready in (None, connected, total):
                hf = HealthFile(str(path))
                hf.update(connected, total, ready)
                texts.append(path.read_text())
    for why in ("stopped", "SIGTERM", "SIGINT", "SIGHUP", "error: OSError(98, 'Address in use')"):
        hf = HealthFile(str(path))
        hf.update(2, 2)
        hf.stopped(why)
        texts.append(path.read_text())
    return sorted(set(texts))


def run_check(cmd: list[str], health: Path) -> tuple[int, str, str]:
    r = subprocess.run(
        [word.replace("/health", str(health)) for word in cmd],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.returncode, r.stdout, r.stderr


def test_healthcheck_answers_as_upstreams_on_every_file_xcon_writes(tmp_path):
    """Same exit code and same output as ``sed 1d /health; exit $(head -n1 /health)``."""
    ours = healthcheck_command(read_stages()[1])
    texts = xcon_health_files(tmp_path)
    states = {t.splitlines()[0] for t in texts}
    assert states == {"0", "1"}, states
    assert len(texts) > 20
    health = tmp_path / "health"
    for text in texts:
        health.write_text(text)
        expected = run_check(UPSTREAM_HEALTHCHECK, health)
        assert expected[0] == int(text[0]) and expected[2] == "", (text, expected)
        assert run_check(ours, health) == expected, text


@pytest.mark.parametrize("content", [None, "", "\n", "garbage\n", "2\nx\n"])
def test_healthcheck_is_unhealthy_on_anything_else(tmp_path, content):
    """A file xcon did not write (missing, empty, not a number) is unhealthy, exit 1 (never 2)."""
    health = tmp_path / "health"
    if content is not None:
        health.write_text(content)
    assert run_check(healthcheck_command(read_stages()[1]), health)[0] == 1
