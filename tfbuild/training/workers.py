"""Multi-worker training on this machine: tfbuild starts target.workers processes on
127.0.0.1, each with its TF_CONFIG, running the same training under
MultiWorkerMirroredStrategy. Worker 0 is the chief: its model is the step's output and its
epochs are the step's progress; the others save to a scratch folder, as Keras wants every
worker to save.

    python -m tfbuild.training.workers SPEC.json     (what each worker process runs)

On a real cluster, set TF_CONFIG yourself on each machine and run tfbuild there: the train
step then joins that cluster in-process instead of starting workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ..steps.base import Progress

EPOCH = "TFBUILD_EPOCH "
RESULT = "TFBUILD_RESULT "
TIMEOUT_S = 1800


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def train_on_local_workers(
    params: dict[str, Any], data: Path, out: Path, progress: Progress, files: Mapping[str, Path] | None = None
) -> dict[str, Any]:
    workers = params["workers"]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(workers)]}
    with tempfile.TemporaryDirectory(prefix="tfbuild-workers-") as scratch:
        folder = Path(scratch)
        processes, logs = [], []
        for index in range(workers):
            spec = {"params": params, "data": str(data), "out": str(out if index == 0 else folder / f"worker{index}.h5"),
                    "files": {role: str(path) for role, path in (files or {}).items()}}
            (folder / f"spec{index}.json").write_text(json.dumps(spec))
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            log = open(folder / f"worker{index}.log", "w")
            logs.append(log)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "tfbuild.training.workers", str(folder / f"spec{index}.json")],
                stdout=subprocess.PIPE if index == 0 else log, stderr=log, text=True, env=env,
            ))  # fmt: skip
        try:
            result = _follow_chief(processes[0], progress)
            codes = [p.wait(timeout=TIMEOUT_S) for p in processes]
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
            for log in logs:
                log.close()
        failed = [i for i, code in enumerate(codes) if code != 0]
        if failed or result is None:
            index = failed[0] if failed else 0
            raise RuntimeError(f"worker {index} of {workers} failed: {_last_line(folder / f'worker{index}.log')}")
    result["workers"] = workers
    return result


def _follow_chief(chief: subprocess.Popen, progress: Progress) -> dict[str, Any] | None:
    assert chief.stdout is not None
    result = None
    for line in chief.stdout:
        if line.startswith(EPOCH):
            event = json.loads(line[len(EPOCH):])
            if "completed" in event:
                if hasattr(progress, "update"):  # as in fit.EpochProgress: epochs-only progress is fine
                    progress.update(event["completed"], event["total"], event["description"])
            elif "total" in event:
                progress.start(event["total"], event["description"])
            else:
                progress.advance(event["description"])
        elif line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
    return result


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class _PrintedProgress:
    """A worker's progress, as lines its parent reads."""

    def start(self, total: int, description: str) -> None:
        print(EPOCH + json.dumps({"total": total, "description": description}), flush=True)

    def advance(self, description: str | None = None) -> None:
        print(EPOCH + json.dumps({"description": description}), flush=True)

    def update(self, completed: float, total: float, description: str | None = None) -> None:
        print(EPOCH + json.dumps({"completed": completed, "total": total, "description": description}), flush=True)


def main(spec_path: str) -> None:
    from .trainer import train

    spec = json.loads(Path(spec_path).read_text())
    files = {role: Path(path) for role, path in spec.get("files", {}).items()}
    info = train(spec["params"], Path(spec["data"]), Path(spec["out"]), _PrintedProgress(), files)
    print(RESULT + json.dumps(info), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
