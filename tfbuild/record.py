"""build.json: what a build did, in the run folder, for people and for tools.

{
  "tfbuild": version, "recipe": name or null,
  "status": "succeeded" | "failed" (a step failed or a gate was violated),
  "started": ISO time, "seconds": wall time,
  "cache": cache folder,
  "verification": "on" | "off" (verify.enabled; "on" means every export has a verify step),
  "gate_violations": ["ARTIFACT (RUNTIME): what broke which gates.* limit", ...],
  "config": {...the resolved config...},
  "steps": [{"kind", "name", "key", "status", "reason", "seconds", "info": {...}, "error"?}],
  "artifacts": [{"name", "format", "variant", "path" (relative to the run folder),
                 "sha256" (of the file; of the sorted file list for a folder), "bytes"}]
}
Keys are only ever added, never renamed, so tools reading it keep working.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .runner import BuildResult


def artifacts(result: BuildResult) -> list[dict[str, Any]]:
    rows = []
    for step in result.steps:
        if step.entry is None:
            continue
        for out in step.spec.outputs:
            if out.publish is None:
                continue
            record = step.entry.manifest["outputs"][out.role]
            rows.append(
                {
                    "name": out.artifact,
                    "format": out.format,
                    "variant": out.variant,
                    "path": out.publish,
                    "sha256": record["sha256"],
                    "bytes": record["bytes"],
                    "step": step.spec.name,
                }
            )
    return rows


def build_record(
    result: BuildResult,
    *,
    recipe: str | None,
    config: dict[str, Any],
    cache_dir: Path,
    verification: str,
    gate_violations: list[str],
    started: str,
    seconds: float,
) -> dict[str, Any]:
    return {
        "tfbuild": __version__,
        "recipe": recipe,
        "status": "failed" if result.failed or gate_violations else "succeeded",
        "started": started,
        "seconds": round(seconds, 3),
        "cache": str(cache_dir),
        "verification": verification,
        "gate_violations": gate_violations,
        "config": config,
        "steps": [
            {
                "kind": r.spec.kind,
                "name": r.spec.name,
                "key": r.key,
                "status": r.status,
                "reason": r.reason,
                "seconds": round(r.seconds, 3),
                "info": r.info,
                **({"error": r.error} if r.error else {}),
            }
            for r in result.steps
        ],
        "artifacts": artifacts(result),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """The whole file or none of it: a full disk or a read-only folder leaves no truncated file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write() names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
