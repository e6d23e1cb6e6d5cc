"""Start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 with a generated kubeconfig.

The binaries come from hack/build-control-plane.sh (cached under ~/.cache/cxbackup/k8s/<version>/bin).
Certificates (a CA, the API server's serving certificate, an admin client certificate in
system:masters, the service-account signing key) are generated with `cryptography` into the work
directory. Everything listens on loopback and stops when `stop()` is called or the context exits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import random
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "K8S_VERSION",
    "ControlPlane",
    "ControlPlaneError",
    "binaries_dir",
    "build_binaries",
    "free_port",
    "stop_process",
    "stopped_on_error",
]

K8S_VERSION = os.environ.get("K8S_VERSION", "v1.37.2")
REPO_ROOT = Path(__file__).resolve().parents[3]


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says which part and why."""


def binaries_dir() -> Path:
    cache = Path(os.environ.get("CXBACKUP_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))))
    if "CXBACKUP_CACHE" not in os.environ:
        cache = cache / "cxbackup"
    return cache / "k8s" / K8S_VERSION / "bin"


def build_binaries() -> Path:
    """Run hack/build-control-plane.sh (a no-op when the binaries are cached) and return the bin dir."""
    script = REPO_ROOT / "hack" / "build-control-plane.sh"
    env = {**os.environ, "K8S_VERSION": K8S_VERSION}
    proc = subprocess.run([str(script)], env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{script} failed with exit code {proc.returncode}; see its output above")
    return Path(proc.stdout.strip().splitlines()[-1])


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the process either way (None or gone: nothing)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def stopped_on_error(stop: Callable[[], object]) -> Iterator[None]:
    """Around the start of a harness: when it raises half-way, `stop()` stops what was started so far and the
    start's own exception is raised again. A failure of `stop()` is added to that exception as a note; it
    never replaces it (the first error is the one that says why the start failed)."""
    try:
        yield
    except BaseException as exc:
        try:
            stop()
        except Exception as stop_exc:
            exc.add_note(f"stopping what had started failed too: {type(stop_exc).__name__}: {stop_exc}")
        raise


def free_port() -> int:
    """A free TCP port on 127.0.0.1 below Linux's ephemeral range (32768-60999), so that no outgoing
    connection (e.g. kube-apiserver's own connections to etcd) can take it between this pick and the bind."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        fallback: int = s.getsockname()[1]
        return fallback


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _cert(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    server_names: list[str] | None = None,
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if server_names is not None:
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, rooted at `workdir`."""

    workdir: Path
    controllers: str = (
        "job,garbagecollector,ttl-after-finished,namespace,serviceaccount,serviceaccount-token,"
        # what a node needs: the CA ConfigMap for token volumes, node health, PV binding, pod clean-up
        "root-ca-certificate-publisher-controller,node-lifecycle-controller,persistentvolume-binder-controller,"
        "pod-garbage-collector-controller,deployment-controller,replicaset-controller"
    )
    with_controller_manager: bool = True
    bin_dir: Path = field(default_factory=binaries_dir)
    api_port: int = 0
    kubeconfig: Path = field(init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    _logs: dict[str, Path] = field(default_factory=dict, init=False)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise ControlPlaneError(
                f"{path} is missing: run hack/build-control-plane.sh (make test does) to build {K8S_VERSION}"
            )
        return str(path)

    # ---- certificates -------------------------------------------------------------------------------
    def _make_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cxbackup-test-ca")])
        ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
        (pki / "ca.crt").write_bytes(_pem(ca))
        _write_key(pki / "ca.key", ca_key)
        srv_key = _key()
        srv = _cert(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            srv_key,
            ca_name,
            ca_key,
            server_names=[
                "127.0.0.1",
                "10.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ],
        )
        (pki / "apiserver.crt").write_bytes(_pem(srv))
        _write_key(pki / "apiserver.key", srv_key)
        admin_key = _key()
        admin = _cert(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "cxbackup-admin"),
                ]
            ),
            admin_key,
            ca_name,
            ca_key,
            client=True,
        )
        (pki / "admin.crt").write_bytes(_pem(admin))
        _write_key(pki / "admin.key", admin_key)
        _write_key(pki / "sa.key", _key())
        sa_key = serialization.load_pem_private_key((pki / "sa.key").read_bytes(), None)
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _write_kubeconfig(self) -> None:
        pki = self.workdir / "pki"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: cxbackup-test\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority: {pki / 'ca.crt'}\n"
            "users:\n- name: admin\n  user:\n"
            f"    client-certificate: {pki / 'admin.crt'}\n    client-key: {pki / 'admin.key'}\n"
            "contexts:\n- name: cxbackup-test\n  context:\n    cluster: cxbackup-test\n    user: admin\n"
            "current-context: cxbackup-test\n"
        )
        self.kubeconfig.chmod(0o600)

    # ---- processes ----------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        self._logs[name] = log
        with log.open("wb") as out:
            self._procs[name] = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self._logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _check_alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.poll() is not None:
            raise ControlPlaneError(f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}")

    def _wait(self, name: str, probe: str, timeout: float, *, tls: bool) -> None:
        deadline = time.monotonic() + timeout
        ctx: ssl.SSLContext | None = None
        if tls:
            pki = self.workdir / "pki"
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        last = ""
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                with urllib.request.urlopen(probe, timeout=2, context=ctx) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} not ready after {timeout:.0f}s ({last}):\n{self.log_tail(name)}")

    def start(self) -> ControlPlane:
        """Start etcd, kube-apiserver and (unless not wanted) kube-controller-manager; when one fails, the ones
        already running are stopped before the error is raised."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        with stopped_on_error(self.stop):
            self._start_processes()
        return self

    def _start_processes(self) -> None:
        etcd_port, peer_port = free_port(), free_port()
        self.api_port = self.api_port or free_port()
        self._write_kubeconfig()
        self._spawn(
            "etcd",
            [
                self.binary("etcd"),
                "--name=cxbackup-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=cxbackup-test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", f"http://127.0.0.1:{etcd_port}/health", 30, tls=False)
        for attempt in range(3):
            self._spawn("kube-apiserver", self._apiserver_args(etcd_port))
            try:
                self._wait("kube-apiserver", f"{self.server}/readyz", 90, tls=True)
                break
            except ControlPlaneError as exc:
                # another process took the port between the pick and the bind: pick again
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self.api_port = free_port()
                self._write_kubeconfig()
        if self.with_controller_manager:
            self.start_controller_manager()

    def _apiserver_args(self, etcd_port: int) -> list[str]:
        pki = self.workdir / "pki"
        return [
            self.binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--secure-port={self.api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--endpoint-reconciler-type=none",
            # `kubectl logs` and `exec` reach kubelets on their InternalIP with the admin client certificate
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--v=1",
        ]

    def start_controller_manager(self) -> None:
        pki = self.workdir / "pki"
        self._spawn(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={self.controllers}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--use-service-account-credentials=false",
                "--concurrent-job-syncs=10",
                "--v=1",
            ],
        )
        time.sleep(0.5)
        self._check_alive("kube-controller-manager")

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port (a fault scenario)."""
        args = [str(a) for a in self._procs["kube-apiserver"].args]  # type: ignore[union-attr]
        self._stop_one("kube-apiserver")
        self._spawn("kube-apiserver", args)
        self._wait("kube-apiserver", f"{self.server}/readyz", 90, tls=True)

    def _stop_one(self, name: str) -> None:
        stop_process(self._procs.pop(name, None))

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._stop_one(name)

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the kubectl built with the control plane against it; with check, a failure raises
        ControlPlaneError carrying kubectl's own message."""
        proc = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input_text,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )
        if check and proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip()[:2000]
            raise ControlPlaneError(f"kubectl {' '.join(args)[:200]} failed ({proc.returncode}): {message}")
        return proc

    def wait_crds_established(self, selector: str, timeout: float = 180) -> None:
        """Wait until every CRD matching `selector` is Established. `kubectl wait` fails at once, instead
        of waiting, on a CRD the API server has not given any condition yet ("accessor error: <nil>"),
        so it is retried until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(int(deadline - time.monotonic()), 1)
            proc = self.kubectl("wait", "--for=condition=Established", f"--timeout={left}s", "crd", "-l", selector,
                                check=False)  # fmt: skip
            if proc.returncode == 0:
                return
            if time.monotonic() >= deadline:
                message = (proc.stderr or proc.stdout).strip()[:2000]
                raise ControlPlaneError(f"CRDs {selector} not Established after {timeout:.0f}s: {message}")
            time.sleep(0.5)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(workdir: Path, *, keep: bool = False, **kwargs: object) -> Iterator[ControlPlane]:
    """Start a control plane in `workdir`, yield it, stop it and (unless keep) remove its data."""
    cp = ControlPlane(workdir=workdir, **kwargs)  # type: ignore[arg-type]
    try:
        yield cp.start()
    finally:
        cp.stop()
        if not keep:
            shutil.rmtree(workdir / "etcd", ignore_errors=True)
