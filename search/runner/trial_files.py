"""A trial's files reach the driver's experiment folder, whichever node ran it; no shared disk needed.

A trial run on another node writes `train.log`, `metrics.json`, `env.json`, ... into its folder on
*that* node's disk. The driver starts one `FileSink` actor on its own node (`start_sink`); the
trainable tells it where it runs as it starts (`node.json`) and sends its folder's files when it ends,
finished or failed (`ship`), before Tune hears the result, so the driver never reads a folder still
on its way. A node that sees the driver's folder itself (the driver's own node, or a shared disk) is
recognised by a token file the driver wrote there, and sends nothing. Files over `max_bytes` (model
checkpoints) stay on their node, listed in `left_on_node.json`, unless a pattern in `also` names them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from search.core.files import write_atomic
from search.core.layout import LEFT_ON_NODE, NODE_FILE, TOKEN_FILE

MAX_SYNC_BYTES = 8 * 2**20          # logs, metrics, env: small; a checkpoint (~16 MB) stays unless asked for
SYNC_KEY = "file_sink"              # the trial config's key for `start_sink`'s answer


def node_identity() -> dict[str, str]:
    """This process's node: host name, IP and Ray node id (two nodes of one machine differ by id)."""
    info = {"host": socket.gethostname(), "ip": "", "node_id": ""}
    try:
        import ray

        if ray.is_initialized():
            info["ip"] = ray.util.get_node_ip_address()
            info["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - identity is informative only
        pass
    info["node"] = f"{info['ip'] or info['host']}/{info['node_id'][:8]}" if info["node_id"] else info["host"]
    return info


def read_node(trial_dir: Path) -> str:
    """The `node` a trial folder's `node.json` names, '' when it has none."""
    try:
        return str(json.loads((Path(trial_dir) / NODE_FILE).read_text()).get("node", ""))
    except (OSError, ValueError, AttributeError):
        return ""


class FileSink:
    """Writes the files trainables send under one root folder on the driver's node."""

    def __init__(self, root: str):
        self.root = Path(root).resolve()

    def ready(self) -> bool:
        return True

    def put(self, relative: str, data: bytes, mtime: float) -> None:
        path = (self.root / relative).resolve()
        if self.root not in path.parents:
            raise ValueError(f"{relative!r} is outside {self.root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        os.utime(path, (mtime, mtime))


@dataclass(frozen=True)
class Sink:
    """The driver's running FileSink: `config` is what a trial needs (plain values: Tune records
    configs), `actor` the handle that keeps the actor alive while the driver holds it."""

    config: dict[str, Any]
    actor: Any


def start_sink(root: Path, max_bytes: int = MAX_SYNC_BYTES, also: tuple[str, ...] = ()) -> Sink:
    """Start the driver's FileSink for `root` (Ray initialised) and write the token that tells a node
    sharing this disk."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    write_atomic(root / TOKEN_FILE, token)
    context = ray.get_runtime_context()
    name = f"pgolf-files-{token[:12]}"
    actor = ray.remote(num_cpus=0)(FileSink).options(
        name=name, namespace=context.namespace, max_concurrency=4,
        scheduling_strategy=NodeAffinitySchedulingStrategy(context.get_node_id(), soft=False)).remote(str(root))
    ray.get(actor.ready.remote())
    return Sink({"actor": name, "namespace": context.namespace, "root": str(root), "token": token,
                 "max_bytes": int(max_bytes), "also": list(also)}, actor)


def trial_config(sink: Sink | None) -> dict[str, Any]:
    """What a trial config carries of the sink, under SYNC_KEY (nothing without one)."""
    return {} if sink is None else {SYNC_KEY: sink.config}


def _shares_disk(sync: Mapping[str, Any]) -> bool:
    try:
        return (Path(sync["root"]) / TOKEN_FILE).read_text() == sync["token"]
    except OSError:
        return False


def _sink(sync: Mapping[str, Any]):
    import ray

    return ray.get_actor(sync["actor"], namespace=sync["namespace"])


def announce(trial_dir: Path, sync: Mapping[str, Any] | None) -> None:
    """Record the node that runs this trial in its folder (`node.json`), on the driver's disk too."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(trial_dir / NODE_FILE, json.dumps(node_identity()))
    if sync and not _shares_disk(sync):
        _send(trial_dir, sync, [trial_dir / NODE_FILE])


def ship(trial_dir: Path, sync: Mapping[str, Any] | None) -> int:
    """Send the trial folder's files to the driver's sink (a no-op on a node that shares its disk);
    returns how many were sent. Files over the size limit stay, listed in `left_on_node.json`."""
    if not sync or not trial_dir.is_dir() or _shares_disk(sync):
        return 0
    send, left = [], []
    for path in sorted(p for p in trial_dir.rglob("*") if p.is_file() and not p.is_symlink()):
        size = path.stat().st_size
        if size > int(sync["max_bytes"]) and not any(fnmatch.fnmatch(path.name, pat) for pat in sync["also"]):
            left.append({"file": str(path.relative_to(trial_dir)), "bytes": size})
        else:
            send.append(path)
    if left:
        write_atomic(trial_dir / LEFT_ON_NODE, json.dumps({**node_identity(), "path": str(trial_dir),
                                                           "files": left}, indent=1))
        send.append(trial_dir / LEFT_ON_NODE)
    _send(trial_dir, sync, send)
    return len(send)


def _send(trial_dir: Path, sync: Mapping[str, Any], paths: list[Path]) -> None:
    import ray

    sink, root = _sink(sync), Path(sync["root"])
    for path in paths:  # one at a time: a file's bytes are in memory only while it travels
        ray.get(sink.put.remote(str(path.relative_to(root)), path.read_bytes(), path.stat().st_mtime))
