"""The docs say what xcon does.

* Every relative link in README.md and docs/ points at a file that exists,
  and a ``#anchor`` at a heading of that file.
* Every error message quoted in a fenced block is the one xcon prints: after
  ``$ xcon ARGS`` (or ``$ xcon ctl ARGS``), the lines that follow are what it
  prints for ARGS, produced here by the command line's own parser and checks
  in-process; an ``xcon: error:`` line without a command is one of the errors
  at start that a test below produces from its numbers; a config file's error
  (``reload failed, nothing changed: NAME.toml: ...``) is produced by reading
  the file the docs show in a fenced block starting with ``# NAME.toml``.
* Every xcon command line in a fenced block (``xcon --p2p ...``, ``docker run
  ... vr-xcon --hub ...``) passes the command line's checks, without running,
  and every TOML block is a config file xcon accepts (but those shown to be
  refused).  A ``json NAME`` or ``yaml NAME`` block is the file NAME the
  commands next to it read (a topology file).
* Every option of ``xcon`` is in docs/cli.md.
"""

from __future__ import annotations

import errno
import grp
import os
import re
import shlex
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from xcon import cli, fakerouter, netconf, rlimit
from xcon.control import client
from xcon.control.config import ConfigError, load_config
from xcon.errors import ModeError

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- reading markdown ---------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block: its file, the line number of its first line, the
    info string (``toml``, ``sh`` or none) and its lines."""

    path: Path
    line: int
    info: str
    lines: tuple[str, ...]


def read(path: Path) -> tuple[list[Block], list[tuple[int, str]]]:
    """The fenced blocks of ``path`` and its other lines (numbered from 1)."""
    blocks: list[Block] = []
    prose: list[tuple[int, str]] = []
    fence: tuple[int, str, list[str]] | None = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            if fence is None:
                fence = (n + 1, line.strip()[3:].strip(), [])
            else:
                blocks.append(Block(path, fence[0], fence[1], tuple(fence[2])))
                fence = None
            continue
        if fence is None:
            prose.append((n, line))
        else:
            fence[2].append(line)
    assert fence is None, f"{_rel(path)}: a fenced block is not closed"
    return blocks, prose


BLOCKS = [b for path in DOCS for b in read(path)[0]]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation (backticks
    included) removed, spaces turned into hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of ``path`` (a repeated one gets -1, -2...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in read(path)[1]:
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m is None:
            continue
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`]*`")


def broken_links(path: Path) -> list[str]:
    """Every relative link of ``path`` that leads nowhere, as ``LINE: TARGET (why)``."""
    out = []
    for n, line in read(path)[1]:
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                out.append(f"{n}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                out.append(f"{n}: {target} (no heading #{anchor} in {dest.name})")
    return out


# -- commands in fenced blocks --------------------------------------------------------------

#: What starts an xcon process in the docs' command lines.
_XCON = {"xcon", "/xcon", "/xcon.py", ".venv/bin/xcon"}
_MODES = {"--p2p", "--hub", "--tap-listen", "--raw-listen", "--config", "--topology"}
_MENTIONS_XCON = re.compile(r"""(^|[\s"'])(xcon|/xcon(\.py)?|\.venv/bin/xcon|vr-xcon)(\s|$)""")


def invocations(command: str) -> list[list[str]]:
    """The argument lists of the xcon processes a shell command line starts
    (``bash -c "..."`` and ``docker run ... vr-xcon ARGS`` included)."""
    words = shlex.split(command, comments=True)
    out: list[list[str]] = []
    cmds: list[list[str]] = [[]]
    for w in words:
        if w in ("|", "||", "&&", ";"):
            cmds.append([])
        else:
            cmds[-1].append(w)
    for cmd in cmds:
        for w in cmd:
            if " " in w and _MENTIONS_XCON.search(w):
                out += invocations(w)
        if cmd[:2] == ["docker", "run"]:
            if "vr-xcon" in cmd:
                out.append(cmd[len(cmd) - cmd[::-1].index("vr-xcon") :])
            continue
        for i, w in enumerate(cmd):
            if w in _XCON:
                out.append(cmd[i + 1 :])
                break
    return out


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """The block's lines with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for i, line in enumerate(block.lines):
        n = block.line + i
        if pending is not None:
            n, line = pending[0], pending[1] + " " + line.strip()
            pending = None
        if line.endswith("\\"):
            pending = (n, line[:-1])
        else:
            out.append((n, line))
    if pending is not None:
        out.append(pending)
    return out


@dataclass(frozen=True)
class Session:
    """``$ COMMAND`` in a fenced block and the lines shown after it."""

    path: Path
    line: int
    command: str
    output: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{_rel(self.path)}:{self.line}"


def sessions(block: Block) -> list[Session]:
    out: list[Session] = []
    for n, line in logical_lines(block):
        if line.startswith("$ "):
            out.append(Session(block.path, n, line[2:], ()))
        elif out:
            last = out[-1]
            out[-1] = Session(last.path, last.line, last.command, (*last.output, line))
    return out


def _is_error(line: str) -> bool:
    return line.startswith(("xcon: error:", "xcon ctl:", "xcon ctl ", "xcon fake-router: error:"))


SHELL_BLOCKS = [
    b for b in BLOCKS if b.info.partition(" ")[0] not in ("toml", "text", "json", "yaml")
]
SESSIONS = [s for b in SHELL_BLOCKS for s in sessions(b)]
#: ``$ xcon ...`` followed by what xcon prints when it refuses it.
ERROR_SESSIONS = [s for s in SESSIONS if s.output and any(_is_error(o) for o in s.output)]


NOT_SHELL = "(not a shell command line)"


def _commands() -> list[tuple[str, list[str]]]:
    """Every xcon command line of the docs that should start xcon (the ones
    shown with an error aside): (where, argv)."""
    refused = {(s.path, s.line) for s in ERROR_SESSIONS}
    out = []
    for block in SHELL_BLOCKS:
        shown = sessions(block)
        if shown:
            lines = [(s.line, s.command) for s in shown if (s.path, s.line) not in refused]
        else:
            lines = logical_lines(block)
        for n, text in lines:
            if not _MENTIONS_XCON.search(text) or re.search(r"(^|\s)(\.\.\.|…)(\s|$)", text):
                continue
            try:
                found = invocations(text)
            except ValueError as e:  # the test fails on it, naming the line
                out.append((f"{_rel(block.path)}:{n}", [NOT_SHELL, f"{e}: {text}"]))
                continue
            for argv in found:
                if argv[:1] == ["fake-router"] or (
                    argv and argv[0] not in ("ctl", "demo") and _MODES & set(argv)
                ):
                    out.append((f"{_rel(block.path)}:{n}", argv))
    return out


ALL_COMMANDS = _commands()
#: ``xcon fake-router ...``: checked by its own parser.
FAKE_ROUTER_COMMANDS = [(w, a) for w, a in ALL_COMMANDS if a[:1] == ["fake-router"]]
COMMANDS = [(w, a) for w, a in ALL_COMMANDS if a[:1] != ["fake-router"]]


def toml_files() -> dict[str, str]:
    """The config files the docs show: a TOML block whose first line is ``# NAME.toml``."""
    out = {}
    for b in BLOCKS:
        m = re.fullmatch(r"#\s*(\S+\.toml)\s*", b.lines[0]) if b.lines else None
        if b.info == "toml" and m is not None:
            out[m[1]] = "\n".join(b.lines) + "\n"
    return out


TOML_FILES = toml_files()


def named_files() -> dict[str, str]:
    """The other files the docs show: a ``json NAME`` or ``yaml NAME`` block."""
    out = {}
    for b in BLOCKS:
        words = b.info.split()
        if len(words) == 2 and words[0] in ("json", "yaml"):
            out[words[1]] = "\n".join(b.lines) + "\n"
    return out


NAMED_FILES = named_files()


# -- running xcon's checks in-process ---------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory as the docs assume one: a ``captures`` directory, a
    ``health`` file, the config files the docs show; a group ``lab``; no xcon
    running (``xcon ctl`` finds no socket)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "captures").mkdir()
    (tmp_path / "health").write_text("0\nAll 2 sockets connected\n")
    for name, text in {**TOML_FILES, **NAMED_FILES}.items():
        (tmp_path / name).write_text(text)
    real = grp.getgrnam

    def getgrnam(name: str) -> object:
        return types.SimpleNamespace(gr_gid=4242) if name == "lab" else real(name)

    monkeypatch.setattr(grp, "getgrnam", getgrnam)
    monkeypatch.setenv("XCON_CONTROL", str(tmp_path / "no-xcon.sock"))
    monkeypatch.delenv("XCON_TOKEN_FILE", raising=False)
    return tmp_path


def refusal(argv: list[str]) -> str | None:
    """Why xcon's command line refuses ``argv`` (None: it is accepted)."""
    try:
        cli.check(cli.build_parser().parse_args(argv))
    except SystemExit:
        return "parser"
    except Exception as e:
        return str(e) or type(e).__name__
    return None


def xcon_prints(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """What ``xcon ARGV`` prints on stderr and its exit code, for an ARGV it
    refuses before anything starts (so nothing is started here)."""
    assert refusal(argv) is not None, f"xcon accepts {shlex.join(argv)}"
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err.rstrip("\n")


# -- the tests ------------------------------------------------------------------------------


def test_slugs_are_githubs():
    assert slug("### `--raw-listen N --raw-if IF`".lstrip("# ")) == "--raw-listen-n---raw-if-if"
    assert slug("A lab across two hosts (VXLAN)") == "a-lab-across-two-hosts-vxlan"
    assert slug("Capture (`xcon/capture/`)") == "capture-xconcapture"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Sub part\n\n[ok](#sub-part) [gone](other.md) [bad](#nothing)\n"
        "```\n[in a block](nowhere.md)\n```\n`[code](nowhere.md)` [web](https://example.org)\n"
    )
    assert broken_links(page) == [
        "5: other.md (no such file)",
        "5: #nothing (no heading #nothing in page.md)",
    ]


@pytest.mark.parametrize("path", DOCS, ids=_rel)
def test_relative_links_lead_somewhere(path):
    assert broken_links(path) == []


def test_the_docs_quote_errors_and_commands():
    """The collectors find what the docs hold (a parser change here cannot
    silently empty the tests below)."""
    assert len(ERROR_SESSIONS) > 80
    assert len(COMMANDS) > 40
    assert len(FAKE_ROUTER_COMMANDS) > 5
    assert {"xcon.toml", "twice.toml", "slow-ring.toml"} <= set(TOML_FILES)
    assert {"lltopo.json", "lab.clab.yml", "broken.json"} <= set(NAMED_FILES)


@pytest.mark.parametrize("session", ERROR_SESSIONS, ids=lambda s: s.id)
def test_quoted_error_is_what_xcon_prints(session, workdir, capsys):
    argv = invocations(session.command)
    assert len(argv) == 1, f"{session.id}: one xcon command per $ line"
    expected = "\n".join(session.output)
    if argv[0][:1] == ["ctl"]:
        capsys.readouterr()
        code = client.main(argv[0][1:])
        printed = capsys.readouterr().err.rstrip("\n")
    elif argv[0][:1] == ["fake-router"]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            fakerouter.parse(argv[0][1:])
        code, printed = exited.value.code, capsys.readouterr().err.rstrip("\n")
    else:
        code, printed = xcon_prints(argv[0], capsys)
    assert printed == expected
    assert code == 2


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_line_example_passes_the_checks(where, argv, workdir):
    assert argv[0] != NOT_SHELL, argv[1]
    assert refusal(argv) is None


@pytest.mark.parametrize(
    ("where", "argv"), FAKE_ROUTER_COMMANDS, ids=[w for w, _ in FAKE_ROUTER_COMMANDS]
)
def test_fake_router_example_passes_its_checks(where, argv):
    assert argv[0] != NOT_SHELL, argv[1]
    fakerouter.parse(argv[1:])  # a refusal is SystemExit


@pytest.mark.parametrize("name", sorted(TOML_FILES))
def test_config_file_example_is_read_as_the_docs_say(name, workdir):
    """A config file the docs show is accepted, unless the docs show it refused."""
    shown_refused = any(name in argv for s in ERROR_SESSIONS for argv in invocations(s.command))
    if shown_refused:
        with pytest.raises(ConfigError):
            load_config(name)
    else:
        load_config(name)


def test_unnamed_toml_blocks_are_valid_config(workdir):
    unnamed = [b for b in BLOCKS if b.info == "toml" and not re.match(r"#\s*\S+\.toml", b.lines[0])]
    assert unnamed
    for b in unnamed:
        Path("block.toml").write_text("\n".join(b.lines) + "\n")
        load_config("block.toml")


# Quoted lines without a command: errors at start and reload errors -----------------------

_NOFILE = re.compile(
    r"xcon: error: (\d+) sockets need about \d+ open files, but the hard limit is (\d+): "
)
_VLAN = re.compile(r"xcon: error: --vlan (\d+): cannot create the 802\.1Q sub-interface (\S+): ")
_RELOAD = re.compile(r"reload failed, nothing changed: (\S+?\.toml): ")


class _NetlinkError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def produce(line: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """What xcon prints (or logs) for the quoted ``line``, from its numbers."""
    if m := _NOFILE.match(line):
        sockets, hard = int(m[1]), int(m[2])
        fake = types.SimpleNamespace(
            RLIMIT_NOFILE=0,
            RLIM_INFINITY=-1,
            getrlimit=lambda _: (hard, hard),
            setrlimit=lambda *_: None,
        )
        monkeypatch.setattr(rlimit, "resource", fake)
        with pytest.raises(ModeError) as e:
            rlimit.ensure_nofile(sockets)
        assert e.value.exit_code == 1
        return f"xcon: error: {e.value}"
    if m := _VLAN.match(line):
        vid, name = int(m[1]), m[2]

        class Ipr:
            def link(self, *args: object, **kw: object) -> None:
                raise _NetlinkError(errno.EOPNOTSUPP)

        with pytest.raises(ModeError) as e:
            netconf._add_vlan(Ipr(), _NetlinkError, name.rsplit(".", 1)[0], 1, vid, name)
        return f"xcon: error: {e.value}"
    if m := _RELOAD.search(line):
        with pytest.raises(ConfigError) as e:
            load_config(m[1])
        return line[: m.start()] + f"reload failed, nothing changed: {e.value}"
    raise AssertionError(f"no way to produce {line!r}: quote it after the command that prints it")


def _quoted_alone() -> list[tuple[str, str]]:
    in_sessions = {(s.path, s.line + i + 1) for s in SESSIONS for i in range(len(s.output))}
    out = []
    for b in SHELL_BLOCKS:
        for i, line in enumerate(b.lines):
            n = b.line + i
            if (b.path, n) in in_sessions:
                continue
            if line.startswith("xcon: error:") or _RELOAD.search(line):
                out.append((f"{_rel(b.path)}:{n}", line))
    return out


QUOTED_ALONE = _quoted_alone()


@pytest.mark.parametrize(("where", "line"), QUOTED_ALONE, ids=[w for w, _ in QUOTED_ALONE])
def test_quoted_error_at_start_is_what_xcon_prints(where, line, workdir, monkeypatch):
    assert produce(line, monkeypatch) == line


def test_every_option_is_in_the_cli_page():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    options = [o for a in cli.build_parser()._actions for o in a.option_strings]
    assert "--p2p" in options
    assert [o for o in options if f"`{o}" not in text] == []


def test_the_program_prints_what_the_checks_say(tmp_path, capsys):
    """``xcon`` as a process prints the same line as :func:`cli.main` in-process."""
    session = next(s for s in ERROR_SESSIONS if invocations(s.command)[0][:1] != ["ctl"])
    argv = invocations(session.command)[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "xcon", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.rstrip("\n")) == (2, "\n".join(session.output))
