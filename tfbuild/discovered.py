"""What a step's job read: its discovered inputs, found while it runs, the way a compiler
reports the headers it read (`-MD`) and Ninja keeps them in its deps log.

A key holds what tfbuild knows a step depends on (params, input artifacts, `spec.files`). A
builder can reach further: `importlib.import_module`, a module found after `sys.path.insert`,
an optional import whose module is missing today, a file opened by name. So while a job runs:

- a PEP 578 audit hook sees every `open` in this process; a finder at the end of
  `sys.meta_path` sees every module that no finder could find; at the job's end the modules in
  `sys.modules` (one imported earlier in this process raised no event now) are added;
- of what lies under the project root (the folder tfbuild runs in) and the step's data roots
  (the folders of its declared files outside it), Python source (a `.py` opened or imported,
  or the source of a `.pyc` read) is recorded with its digest, taken when it was read; a module
  looked for and not found, or a file opened that does not exist, is recorded as absent where
  it would have been; a declared file is
  keyed already; any other file is refused (the step fails, naming it and the setting that
  declares such a file);
- reads elsewhere are not inputs of the step: the interpreter, site-packages, tfbuild itself,
  the cache (a step's input artifacts and its output folder), temporary folders, tool and
  library settings in the home folder, and anything outside the watched roots.

The manifest keeps the record (`discovered`: paths relative to the project root, so that
checkouts in different folders share entries); `stale` checks it on every hit.

Limits: only this Python process is seen. Subprocesses (Node, Chromium) and native code
(TensorFlow's C++ file system: TFRecordDataset, tf.io.gfile; HDF5) raise no audit event, and
a directory listing is not a read. Audit hooks cannot be removed: one is installed per
process, the first time a job runs there (never on a fully cached build), and records only
while a job runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .digests import sha256_file
from .errors import TfbuildError

# Tool and library settings a step may read from the home folder (when the project is the
# home folder itself, these are still not the project's files).
HOME_SETTINGS = (".keras", ".cache", ".config", ".local", ".nv", ".matplotlib", "scikit_learn_data",
                 "tensorflow_datasets")  # fmt: skip
AUDIT_LOG = "TFBUILD_AUDIT_LOG"  # a file each job appends the watched paths it read to (tests)
_TFBUILD = Path(__file__).resolve().parent
# An installed distribution's metadata (importlib.metadata reads it from every folder on
# sys.path, the project's too when a package of it is installed editable): not an input.
# tfbuild's own files beside its package (a checkout installed editable): its runtimes read
# the Node packages it pins (the steps that run TF.js key its lockfile).
_TFBUILD_FILES = tuple(str(_TFBUILD.parent / name) for name in ("package.json", "package-lock.json", "node_modules", "conf"))
_METADATA = re.compile(r"[^/]\.(egg-info|dist-info)(/|$)")


class UndeclaredRead(TfbuildError):
    """A step read a file under the project or a data root that its key does not cover."""


@dataclass(frozen=True)
class Scope:
    """Where one job's reads are judged. Every folder is absolute and ends with '/'."""

    project: str  # the project root
    watched: tuple[str, ...]  # the project root and the step's data roots
    exempt: tuple[str, ...]  # folders that hold no inputs (a longer match than a watched root wins)
    declared: tuple[str, ...]  # the step's declared files and folders, absolute, no trailing '/'
    setting: str  # what declares a file this step may read (named when one is refused)


@dataclass
class Reads:
    """What one job read, as absolute paths (filled by the hook, any thread)."""

    scope: Scope
    python: dict[str, str | None] = field(default_factory=dict)  # source -> sha256 (None: gone)
    absent: set[str] = field(default_factory=set)  # where a missing module would have been
    refused: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # every watched path opened (each is judged once)
    logged: list[str] = field(default_factory=list)  # those that may be inputs (the audit log)
    lock: threading.Lock = field(default_factory=threading.Lock)


_active: Reads | None = None  # the job recording now; None: the hook returns at once
_installed = False


def install() -> None:
    """Add the audit hook and the missing-module finder to this process, once."""
    global _installed
    if not _installed:
        sys.addaudithook(_audit)
        sys.meta_path.append(_MissingModules())
        _installed = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audit event of the process (thousands a second under TensorFlow):
    # nothing but a global read and a comparison unless a job records and a file opens.
    reads = _active
    if reads is None or event != "open":
        return
    if len(args) != 3:
        return
    path, _mode, flags = args
    if not isinstance(flags, int):
        return
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    elif not isinstance(path, str):
        return  # a file descriptor
    if (flags & os.O_ACCMODE) == os.O_WRONLY or flags & os.O_TRUNC:
        return  # written, not read
    if _mode is None and not path.startswith("/") and not os.path.lexists(path):
        return  # os.open relative to a folder's descriptor (shutil.rmtree): the event has no folder
    path = _absolute(path)
    if _watched(reads.scope, path):
        _read(reads, path)


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    if "/." in path or "//" in path:
        path = os.path.normpath(path)
    return path


def _watched(scope: Scope, path: str) -> bool:
    """Whether `path` lies under a watched root and no exempt folder inside it."""
    root = max((w for w in scope.watched if path.startswith(w)), key=len, default=None)
    if root is None:
        return False
    return not any(len(e) > len(root) and path.startswith(e) for e in scope.exempt)


def _declared(scope: Scope, path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in scope.declared)


def _read(reads: Reads, path: str) -> None:
    with reads.lock:
        if path in reads.seen:
            return
        reads.seen.add(path)
    if _METADATA.search(path) or any(path == f or path.startswith(f"{f}/") for f in _TFBUILD_FILES):
        return
    reads.logged.append(path)
    if _declared(reads.scope, path):
        return
    source = _source_of(path)
    if source is None:
        if not os.path.lexists(path):  # nothing read (yet): it appearing later is a change
            with reads.lock:
                reads.absent.add(path)
            return
        if os.path.isdir(path):
            return  # a folder opened (to list it, or as a descriptor): no file's bytes
        reads.refused.append(path)
        raise UndeclaredRead(refusal(reads.scope, path))
    with reads.lock:
        if source in reads.python:
            return
        reads.python[source] = None  # first: hashing opens the file, which comes back here
    reads.python[source] = _digest(source)


def _source_of(path: str) -> str | None:
    """The Python source that reading `path` reads (itself, or a cached .pyc's source)."""
    if path.endswith(".py"):
        return path
    if path.endswith(".pyc") and "/__pycache__/" in path:
        try:
            return importlib.util.source_from_cache(path)
        except ValueError:
            return None
    return None


def _digest(path: str) -> str | None:
    try:
        return sha256_file(Path(path))
    except OSError:
        return None


def refusal(scope: Scope, path: str) -> str:
    shown = _shown(scope, path)
    return f"read {shown}, which is not among its inputs: declare it with {scope.setting}"


def _shown(scope: Scope, path: str) -> str:
    return path[len(scope.project):] if path.startswith(scope.project) else path


class _MissingModules:
    """The last finder on sys.meta_path: a module reaching it was found nowhere. Where it
    would have been under a watched root is recorded, so that it appearing later is a change
    (an optional `try: import x` that fell back)."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> None:
        reads = _active
        if reads is not None:
            last = name.rpartition(".")[2]
            for folder in sys.path if path is None else path:
                # Not a folder (an editable install's path-hook name, a zip): no file to appear.
                if isinstance(folder, str) and os.path.isdir(folder or "."):
                    where = _absolute(os.path.join(folder or os.getcwd(), last))
                    if _watched(reads.scope, where):
                        with reads.lock:
                            reads.absent.update((where, f"{where}.py"))
        return None


# -- one job's recording ----------------------------------------------------------------------


def scope_for(step_kind: str, files: Mapping[str, str | Path], cache_root: Path, others: Sequence[Path] = (),
              project: Path | None = None) -> Scope:  # fmt: skip
    """The scope of a job of `step_kind` that declares `files` (its spec.files), uses the cache
    at `cache_root`, and may read `others` too (its input artifacts and output folder)."""
    import tempfile  # here: a cache hit (stale) imports this module and needs none of this

    project_dir = _folder(project or Path.cwd())
    exempt = _exempt(project_dir, cache_root)
    temp = _folder(tempfile.gettempdir())
    declared = tuple(os.path.abspath(p) for p in [*files.values(), *others])
    data_roots = []
    for path in declared[: len(files)]:
        root = _folder(path if os.path.isdir(path) else os.path.dirname(path))
        # A root that holds the project or a place that holds no inputs (home), or lies in
        # one (a venv, the cache; a temporary folder is no such place), would judge what is not
        # the data's: the declared file alone stands then.
        if not any(e.startswith(root) or (root.startswith(e) and e != temp) for e in (project_dir, *exempt)):
            data_roots.append(root)
    setting = "data.path (or data.train/validation/test)" if step_kind == "data" else "model.files"
    return Scope(project_dir, (project_dir, *dict.fromkeys(data_roots)), exempt, declared, setting)


def _folder(path: str | Path) -> str:
    text = os.path.abspath(path)
    return text if text.endswith("/") else text + "/"


def _exempt(project: str, cache_root: Path) -> tuple[str, ...]:
    import site  # here: a cache hit (stale) imports this module and needs neither
    import sysconfig
    import tempfile

    places = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sysconfig.get_paths().values(), *site.getsitepackages(),
              site.getusersitepackages(), tempfile.gettempdir(), str(cache_root), str(_TFBUILD),
              str(_TFBUILD.parent / "hydra_plugins" / "tfbuild_launchers"), os.path.join(project, "node_modules"),
              *(os.path.join(os.path.expanduser("~"), name) for name in HOME_SETTINGS),
              "/proc", "/sys", "/dev", "/etc", "/usr", "/lib", "/lib64", "/opt", "/bin", "/sbin"]  # fmt: skip
    return tuple(dict.fromkeys(_folder(p) for p in places if p))


@contextlib.contextmanager
def recording(scope: Scope) -> Iterator[Reads]:
    """Record what this process reads until the block ends (one job at a time per process)."""
    global _active
    install()
    reads = Reads(scope)
    _active = reads
    try:
        yield reads
    finally:
        _active = None


def record(reads: Reads) -> dict[str, Any]:
    """The manifest's `discovered` record: {"read": {relative path: sha256}, "absent": [...]},
    paths relative to the project root, after adding the modules of sys.modules under it.
    Raises UndeclaredRead for the first refused read (one the step may have swallowed)."""
    if reads.refused:
        raise UndeclaredRead(refusal(reads.scope, reads.refused[0]))
    scope = reads.scope
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(".py"):
            file = _absolute(file)
            if file not in reads.python and _watched(scope, file):
                reads.python[file] = _digest(file)
    read = {_relative(scope, p): d for p, d in reads.python.items() if d is not None and p.startswith(scope.project)}
    absent = sorted(_relative(scope, p) for p in reads.absent if p.startswith(scope.project) and not os.path.lexists(p))
    gone = [p for p, d in reads.python.items() if d is None and p.startswith(scope.project)]
    absent = sorted({*absent, *(_relative(scope, p) for p in gone)})
    return {"read": dict(sorted(read.items())), "absent": absent}


def _relative(scope: Scope, path: str) -> str:
    return path[len(scope.project):]


def append_log(name: str, reads: Reads) -> None:
    """With TFBUILD_AUDIT_LOG set: append `name<TAB>path` for every watched path the job read."""
    log = os.environ.get(AUDIT_LOG)
    if not log or not reads.logged:
        return
    with open(log, "a", encoding="utf-8") as out:
        out.write("".join(f"{name}\t{path}\n" for path in sorted(reads.logged)))


# -- a hit's check ------------------------------------------------------------------------------


def stale(manifest: Mapping[str, Any], file_digest: Callable[[Path, os.stat_result], str],
          project: Path | None = None) -> str | None:  # fmt: skip
    """Why an entry's discovered inputs no longer hold in the project (the reason of the
    rebuild), or None when each read file still has its digest and each absent one is absent.
    A stat per file; a read only where the stat changed."""
    record = manifest.get("discovered")
    if record is None:
        return "built before tfbuild recorded what steps read"
    root = project or Path.cwd()
    for name, digest in record["read"].items():
        path = root / name
        try:
            st = path.stat()
        except OSError:
            return f"input changed (read: {name} is gone)"
        # A FIFO or a device named by a manifest is never read (it could block or never end).
        if not stat.S_ISREG(st.st_mode) or file_digest(path, st) != digest:
            return f"input changed (read: {name})"
    for name in record["absent"]:
        if os.path.lexists(root / name):
            return f"input changed (appeared: {name})"
    return None
