"""A real Triton Inference Server for tests and benchmarks: PyTriton (``nvidia-pytriton``, the
Triton server with only its Python backend) serving a repository from
``moderator models triton-repo`` in its own virtual environment (PyTriton pins numpy<2).

Production serves the same repository with the official image
(``nvcr.io/nvidia/tritonserver:<release>-py3``) and its onnxruntime backend; see docs/operations.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-triton"
SERVER = Path(__file__).with_name("pytriton_server.py")
# What the server script imports, nothing from moderator; numpy<2 is PyTriton's own pin.
REQUIREMENTS = ("nvidia-pytriton>=0.5", "numpy<2", "onnxruntime>=1.20")


def _base_lib() -> str:
    """The Python installation's lib dir: pyenv builds need it on LD_LIBRARY_PATH for the
    Triton stub process that PyTriton starts (it links libpython)."""
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True, check=True)
    return str(Path(out.stdout.strip()) / "lib")


def ensure_venv(venv: Path = VENV) -> Path:
    """Create the PyTriton virtual environment once (a stamp file records the requirements)."""
    stamp = venv / ".moderator-requirements"
    wanted = "\n".join(REQUIREMENTS)
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return venv


class LocalTriton:
    def __init__(self, repo: Path, grpc_port: int, http_port: int, metrics_port: int, log_path: Path, threads: int = 0) -> None:
        self.repo, self.log_path, self.threads = repo, log_path, threads
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self.proc: subprocess.Popen | None = None

    @property
    def _proc(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 120.0) -> LocalTriton:
        ensure_venv()
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(filter(None, [_base_lib(), os.environ.get("LD_LIBRARY_PATH")]))}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(VENV / "bin" / "python"),
                str(SERVER),
                "--repo",
                str(self.repo),
                "--grpc-port",
                str(self.grpc_port),
                "--http-port",
                str(self.http_port),
                "--metrics-port",
                str(self.metrics_port),
                "--threads",
                str(self.threads),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + timeout
        models = [p.name for p in self.repo.iterdir() if (p / "config.pbtxt").is_file()]
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"PyTriton exited with {self._proc.returncode}; see {self.log_path}")
                try:
                    if client.is_server_ready() and all(client.is_model_ready(m) for m in models):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.5)
        finally:
            client.close()
        self.kill()
        raise RuntimeError(f"Triton did not become ready within {timeout:.0f}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole process group (PyTriton, tritonserver and its stubs): a crash."""
        self._signal(signal.SIGKILL, 10)

    def stop(self) -> None:
        self._signal(signal.SIGTERM, 30)

    def _signal(self, sig: int, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
