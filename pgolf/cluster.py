"""Joining a running Ray cluster by address, for the search's driver and for `pgolf.data prepare --address`.

Ray itself retries an unreachable address for minutes and, since 2.59, needs the
token `ray start` made; this checks the address first and sends the token.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


class ClusterError(RuntimeError):
    """The Ray cluster at an address cannot be joined (one-line message, no `error:` prefix)."""


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of `HOST:PORT` or `ray://HOST:PORT`, None for `auto`; anything else is a
    ClusterError in one line, before Ray is asked (it would retry a garbage address for minutes)."""
    if address == "auto":
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--address {address!r} is not HOST:PORT, ray://HOST:PORT or auto "
                           "(e.g. --address 10.0.0.1:6379, the head's `ray start --head --port`)")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nothing listens at (Ray itself retries for minutes)."""
    parsed = split_address(address)
    if parsed is None:
        return
    host, port = parsed
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"cannot join the Ray cluster at {address}: nothing answers at {host}:{port} "
                           f"({exc.strerror or type(exc).__name__}; start the head with `ray start --head "
                           f"--port={port}` or fix --address)") from None


def _send_auth_token_if_any() -> None:
    """`ray start` enables token authentication (Ray >= 2.59), but a driver joining by an explicit
    address (not `auto`) only sends the token in RAY_AUTH_MODE=token, which Ray reads into its
    config once, at import: set it whenever a token is at hand, and have Ray read its config again."""
    if os.environ.get("RAY_AUTH_MODE") is not None or not (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").is_file()):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import Config  # what Ray's own `_enable_token_auth` does after setting the mode

    Config.initialize("")


def join_cluster(address: str, **init_kwargs) -> None:
    """`ray.init(address=...)` after the checks above; a ClusterError in one line if it cannot join."""
    import ray

    _check_reachable(address)
    _send_auth_token_if_any()
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot join the Ray cluster at {address}: {first[:200]} (start it with "
                           "`ray start --head`, check the address, and the token in ~/.ray/auth_token or "
                           "RAY_AUTH_TOKEN)") from None
