"""OAUTHBEARER tokens for kafka-python: from a file (re-read at every authentication, so a
sidecar or a projected Kubernetes token can refresh it) or from a command (run at every
authentication; its standard output, stripped, is the token). Neither is ever logged."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from moderator.errors import SettingsError

MAX_TOKEN_BYTES = 64 * 1024  # a JWT is a few KB
COMMAND_TIMEOUT_S = 30


def token_provider(path: Path | None, command: str | None):
    """A kafka-python ``sasl_oauth_token_provider`` (an object with ``token()``)."""
    try:
        from kafka.net.sasl.oauth import AbstractTokenProvider  # kafka-python 3
    except ImportError:  # kafka-python 2
        from kafka.sasl.oauth import AbstractTokenProvider

    class Provider(AbstractTokenProvider):
        def token(self) -> str:
            return read_token(path, command)

    return Provider()


def read_token(path: Path | None, command: str | None) -> str:
    """Raises:
    SettingsError: the file cannot be read, the command fails, or the token is empty or too long
        (the message never contains the token)."""
    if path is not None:
        try:
            raw = Path(path).read_bytes()[: MAX_TOKEN_BYTES + 1]
        except OSError as exc:
            raise SettingsError(f"kafka.sasl_oauth_token_file: cannot read {path}: {exc.strerror or exc}") from exc
        what = f"kafka.sasl_oauth_token_file {path}"
    else:
        assert command is not None
        try:
            done = subprocess.run(shlex.split(command), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            raise SettingsError(f"kafka.sasl_oauth_token_command failed to run: {type(exc).__name__}") from exc
        if done.returncode != 0:
            raise SettingsError(f"kafka.sasl_oauth_token_command exited {done.returncode}: {done.stderr.decode(errors='replace').strip()[:200]}")
        raw = done.stdout[: MAX_TOKEN_BYTES + 1]
        what = "kafka.sasl_oauth_token_command's output"
    token = raw.decode("utf-8", errors="replace").strip()
    if not token or len(raw) > MAX_TOKEN_BYTES:
        raise SettingsError(f"{what} is {'empty' if not token else 'over 64 KiB'}: not a token")
    return token
