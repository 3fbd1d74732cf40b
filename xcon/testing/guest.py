"""A real Linux guest as a vrnetlab router, for tests that need the guest's view.

The guest is Debian's kernel (``linux-image-amd64``: ``/boot/vmlinuz-*``) with
an initramfs made here from Debian's ``busybox-static`` and the virtio-net
modules of that kernel (and the modules they need, from ``modules.dep``).
Its ``/init`` loads them, gives ``eth0`` the address on the kernel command
line (``xcon.addr=10.0.0.1/24``), prints a ready line and runs a shell on the
serial console.  The image is built once per kernel and init script, under
``$XCON_GUEST_CACHE`` (default ``~/.cache/xcon/guest``), atomically, and
nothing is downloaded.

:class:`Guest` starts it as vrnetlab's launcher starts a router: NIC 1 as
``-device virtio-net-pci,netdev=p01`` on ``-netdev socket,id=p01,listen=HOST:10001``
and the HMP monitor on ``-monitor tcp:HOST:4000,server,nowait`` (so
``--monitors vrnetlab`` finds it), with KVM when ``/dev/kvm`` works and TCG
(slower: longer timeouts) otherwise.  :meth:`Guest.sh` runs a command on the
serial console and returns its output and status; :meth:`Guest.carrier` reads
``/sys/class/net/eth0/carrier``.  Needs root only for nothing but KVM access;
:func:`missing` says what is lacking.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from xcon.limits import QEMU_BASE_PORT
from xcon.testing.qemu import QEMU

#: The modules eth0 needs, in load order after their dependencies.
MODULES = ("virtio_net", "virtio_pci")
BUSYBOX = "/bin/busybox"
READY = "XCON-GUEST-READY"

INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /proc /sys /dev /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m; done
ip link set lo up
for x in $(cat /proc/cmdline); do
  case $x in xcon.addr=*) ADDR=${x#xcon.addr=};; esac
done
ip link set eth0 up
[ -n "$ADDR" ] && ip addr add "$ADDR" dev eth0
echo XCON-GUEST-""READY
exec /bin/sh
"""


def kernel() -> tuple[str, Path] | None:
    """The newest installed kernel: (version, vmlinuz), or None."""
    boot = sorted(Path("/boot").glob("vmlinuz-*"), key=lambda p: _version_key(p.name[8:]))
    for vmlinuz in reversed(boot):
        version = vmlinuz.name[len("vmlinuz-") :]
        if Path(f"/lib/modules/{version}/modules.dep").exists():
            return version, vmlinuz
    return None


def _version_key(v: str) -> list[object]:
    return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)]


def missing() -> str | None:
    """Why no guest can run here (None: it can)."""
    if shutil.which(QEMU) is None:
        return f"{QEMU} not installed (Debian qemu-system-x86)"
    if kernel() is None:
        return "no kernel in /boot with its modules (Debian linux-image-amd64)"
    if not os.access(BUSYBOX, os.X_OK) or shutil.which("cpio") is None:
        return "busybox or cpio not installed (Debian busybox-static, cpio)"
    return None


def kvm() -> bool:
    """Whether this process can use KVM (and a guest booted with it here)."""
    return os.access("/dev/kvm", os.R_OK | os.W_OK) and _KVM_BOOTS.get("ok", True)


#: Whether a guest booted under KVM in this process (a nested KVM may stop a
#: kernel in its decompressor: then every later guest uses TCG at once).
_KVM_BOOTS: dict[str, bool] = {}
#: Seconds a guest under KVM has to print its ready line before TCG is tried.
KVM_BOOT = 8.0


def _modules(version: str) -> list[Path]:
    """The files of MODULES and what they depend on, dependencies first."""
    base = Path(f"/lib/modules/{version}")
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[Path(mod).name.split(".ko")[0]] = [mod, *rest.split()]
    order: list[str] = []

    def add(path: str) -> None:
        name = Path(path).name.split(".ko")[0]
        for dep in deps[name][1:]:
            add(dep)
        if path not in order:
            order.append(path)

    for name in MODULES:
        add(deps[name][0])
    return [base / p for p in order]


def image() -> tuple[Path, Path]:
    """(vmlinuz, initramfs), the initramfs built if missing or stale."""
    found = kernel()
    assert found is not None, missing()
    version, vmlinuz = found
    mods = _modules(version)
    key = hashlib.sha256((version + INIT + "".join(map(str, mods))).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XCON_GUEST_CACHE") or Path.home() / ".cache/xcon/guest")
    out = cache / f"initramfs-{version}-{key}.gz"
    if out.exists():
        return vmlinuz, out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "root"
        (root / "bin").mkdir(parents=True)
        (root / "lib/modules").mkdir(parents=True)
        shutil.copy(BUSYBOX, root / "bin/busybox")
        names = []
        for m in mods:
            data = m.read_bytes()
            if m.suffix == ".xz":
                import lzma

                data = lzma.decompress(data)
            elif m.suffix == ".zst":
                data = subprocess.run(
                    ["zstd", "-dc", str(m)], capture_output=True, check=True
                ).stdout
            name = m.name.split(".ko")[0] + ".ko"
            (root / "lib/modules" / name).write_bytes(data)
            names.append(name)
        (root / "modules.order").write_text("\n".join(names) + "\n")
        init = root / "init"
        init.write_text(INIT)
        init.chmod(0o755)
        files = subprocess.run(
            ["find", "."], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        cpio = subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"],
            cwd=root,
            input=files.encode(),
            capture_output=True,
            check=True,
        ).stdout
        part = Path(tmp) / "initramfs.gz"
        part.write_bytes(gzip.compress(cpio, 6))
        os.replace(part, out)  # whole or not at all: parallel builders agree
    return vmlinuz, out


class Guest:
    """One guest router (see the module docstring); ``host`` is its loopback
    address: NIC 1 listens on ``host:10001``, the monitor on ``host:4000``."""

    def __init__(self, host: str, address: str, mac: str = "52:54:00:00:00:01") -> None:
        self.host = host
        self.address = address
        self.mac = mac
        self.kvm = kvm()
        #: Timeouts scale with the accelerator (TCG is some ten times slower).
        self.slow = 1.0 if self.kvm else 10.0
        self.dir = Path(tempfile.mkdtemp(prefix="xcon-guest-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.console: socket.socket | None = None
        self._buf = b""
        self.boot_seconds = 0.0

    @property
    def accel(self) -> str:
        return "kvm" if self.kvm else "tcg"

    @property
    def endpoint(self) -> str:
        """Its NIC as xcon names it."""
        return f"{self.host}/1"

    @property
    def monitor(self) -> str:
        return f"{self.host}:4000"

    def start(self, timeout: float = 30.0) -> Guest:
        """Boot; with KVM, a guest silent for :data:`KVM_BOOT` s is booted
        again under TCG (and so is every later one)."""
        if self.kvm:
            try:
                self._boot(KVM_BOOT)
                _KVM_BOOTS["ok"] = True
                return self
            except (TimeoutError, RuntimeError):
                self.stop()
                _KVM_BOOTS["ok"] = False
                self.kvm, self.slow = False, 10.0
        self._boot(timeout * self.slow)
        return self

    def _boot(self, timeout: float) -> None:
        vmlinuz, initrd = image()
        serial = self.dir / "serial"
        serial.unlink(missing_ok=True)
        accel = ["-accel", "kvm"] if self.kvm else ["-accel", "tcg"]
        cmd = [
            QEMU,
            *accel,
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(vmlinuz),
            "-initrd",
            str(initrd),
            "-append",
            f"console=ttyS0 quiet panic=-1 xcon.addr={self.address}",
            "-chardev",
            f"socket,id=con,path={serial},server=on,wait=on",
            "-serial",
            "chardev:con",
            "-device",
            f"virtio-net-pci,netdev=p01,mac={self.mac}",
            "-netdev",
            f"socket,id=p01,listen={self.host}:{QEMU_BASE_PORT + 1}",
            "-monitor",
            f"tcp:{self.host}:4000,server,nowait",
        ]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=open(self.dir / "qemu.log", "wb")
        )
        deadline = t0 + timeout
        while not serial.exists():
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"qemu made no serial socket: {self.qemu_log()}")
            time.sleep(0.01)
        self._buf = b""
        self.console = socket.socket(socket.AF_UNIX)
        self.console.connect(str(serial))  # qemu starts the guest now (wait=on)
        self._read_until(READY, deadline)
        self.boot_seconds = time.monotonic() - t0

    def qemu_log(self) -> str:
        try:
            return (self.dir / "qemu.log").read_text(errors="replace").strip()
        except OSError:
            return ""

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"qemu exited {self.proc.returncode}: {self.qemu_log()}")

    def _read_until(self, marker: str, deadline: float) -> str:
        """Console output up to and including ``marker`` (a regex)."""
        assert self.console is not None
        pattern = re.compile(marker.encode())
        while True:
            m = pattern.search(self._buf)
            if m:
                text, self._buf = self._buf[: m.end()], self._buf[m.end() :]
                return text.decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self._buf[-500:].decode(errors="replace")
                raise TimeoutError(f"guest {self.host}: no {marker!r} on the console: {tail!r}")
            self.console.settimeout(min(left, 0.5))
            try:
                data = self.console.recv(65536)
            except TimeoutError:
                self._check_alive()
                continue
            if not data:
                raise RuntimeError(f"guest {self.host}: console closed: {self.qemu_log()}")
            self._buf += data

    def sh(self, command: str, timeout: float = 10.0) -> tuple[int, str]:
        """Run ``command`` in the guest's shell: (exit status, output)."""
        assert self.console is not None
        # The quotes keep the echoed command line from matching the markers.
        self._buf = b""
        line = f'echo "BEGIN""-OUT"; {command}; echo "END""-OUT $?"\n'
        self.console.sendall(line.encode())
        deadline = time.monotonic() + timeout * self.slow
        self._read_until(r"BEGIN-OUT\r?\n", deadline)
        text = self._read_until(r"END-OUT (\d+)", deadline)
        m = re.search(r"END-OUT (\d+)", text)
        assert m is not None
        out = text[: m.start()].replace("\r", "").strip()
        return int(m.group(1)), out

    def carrier(self, ifname: str = "eth0") -> int:
        """``/sys/class/net/IF/carrier`` as the guest reads it (0 or 1)."""
        rc, out = self.sh(f"cat /sys/class/net/{ifname}/carrier")
        assert rc == 0, out
        return int(out.splitlines()[-1])

    def wait_carrier(self, value: int, timeout: float = 5.0) -> float:
        """Poll until the carrier reads ``value``; returns when (monotonic)."""
        deadline = time.monotonic() + timeout * self.slow
        while True:
            if self.carrier() == value:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest {self.host}: carrier never {value}")

    def ping(self, address: str, count: int = 1, wait: int = 1) -> bool:
        rc, _out = self.sh(f"ping -c {count} -W {wait} {address}", timeout=count * wait + 5)
        return rc == 0

    def stop(self) -> None:
        """Kill qemu (as a router that dies: its socket closes)."""
        if self.console is not None:
            self.console.close()
            self.console = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
