"""The no-op shortcut: the same command, in the same folder, with nothing that shaped its
config changed, builds without Hydra.

Hydra costs about 0.5 s of a 0.65 s no-op rebuild (its import, then composing the config
twice: once to choose the run mode, once to run), five times tfbuild's own no-op work. So a
good build leaves a stamp in the cache (stamps/NAME.json, NAME from the arguments and the
folder) that records

- what the composition was made from: the arguments, the folder, the Python, every file and
  folder of the config trees (tfbuild's conf/, ./conf, the recipe folders, those two also
  while they do not exist) and of tfbuild's own source, Hydra's and OmegaConf's installs, the
  plan's input files (data, builders), the folders planning looked into and found something
  missing or matched a glob in (project.watch_for_planning), and the environment variables a
  plan may read (TF_*, CUDA_*, TPU_*, TFBUILD_*, PATH, PYTHON*, and every `oc.env` the config
  names);
- what it made: the plan, the resolved config, Hydra's .hydra/ record, the run folder pattern.

A later command with the same arguments, whose recorded files all keep their stat signature
(size, mtime, ctime, inode, device: ctime cannot be set back by hand; for a symlink, the
link's and its target's, trees walked through links as digests.walk does) and whose
environment matches, hands the stamp's plan to `run_build`. Every step's key is still
computed from its input files and tool versions, and every cache entry checked, exactly as after Hydra: the
stamp saves composing and planning, never a key. Anything else (other arguments, an edit,
a stamp that does not read or whose seal is wrong)
goes the long way, which writes a new stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from .build import Build, build_exit_code
from .cache import Cache, canonical_json
from .digests import RACY_NS, stat_signature, walk
from .plan import OutputSpec, Plan, StepSpec
from .project import config_dirs, planning_watched
from .run_folder import latest_link

FORMAT = 2  # 2: symlinks' targets, folders planning looked into
DEFAULT_CACHE_DIR = "outputs/cache"  # conf/config.yaml's cache.dir; a stamp records the real one
RUN_NAME = "${tfbuild_run_name:${hydra:runtime.choices.recipe}}"  # conf/config.yaml's hydra.run.dir
_NOW = re.compile(r"\$\{now:([^{}]*)\}")
_ENV = re.compile(r"^(TF_|TPU_|CUDA_|NVIDIA_|TFBUILD_|PYTHON)|^PATH$")
# `oc.env` and its variable's name as OmegaConf reads it: bare, or in either quotes, with
# spaces around. Every use must match, or the config is not stamped (a name made by another
# interpolation, an escape: which variable it reads is OmegaConf's to say at compose time).
_OC_ENV_USE = re.compile(r"oc\.env\b")
_OC_ENV = re.compile(r"""oc\.env\s*:\s*(?:"([^"\\$]*)"|'([^'\\$]*)'|([^\s"'\\$,{}:]+))\s*[,}]""")
_RUN_DIR = "\0run_dir\0"  # stands for the run folder in a stored .hydra/ file
RACY_CONTENT_LIMIT = 1 << 20  # a bigger file changed a moment ago: no stamp this time


def run_name(recipe: str | None) -> str:
    """The run folder's name for a recipe (the `tfbuild_run_name` resolver)."""
    return recipe or "no_recipe"


def usable(args: list[str]) -> bool:
    """Arguments a stamp may stand for: overrides only (no --help, -m, --cfg), none of Hydra's own."""
    return all(not arg.startswith("-") and not arg.lstrip("+~").startswith("hydra") for arg in args)


# -- writing, after a good build through Hydra ------------------------------------------------


def record(args: list[str], build: Build, *, run_dir_pattern: str, config_text: str, env: Mapping[str, str]) -> None:
    """Leave a stamp for `build` (made by Hydra from `args`), unless it could mislead: a build
    that is not a plain one, a config that reads the time or Hydra's runtime, a run folder
    pattern other than a time stamp, a cache elsewhere than the arguments say, or an input
    the stamp could not fingerprint."""
    cwd = Path.cwd()
    if not usable(args) or build.dry_run or build.force or build.write_pin or build.pinned_lock is not None:
        return
    if "${now:" in config_text or "${hydra:" in config_text or build.config["target"].get("strategy") != "default":
        return  # values that change by themselves, or hardware found at plan time
    template = _run_dir_template(run_dir_pattern, build)
    if template is None or _cache_dir_for(args, cwd) != build.cache_dir.absolute():
        return
    watched = _watched(build.plan)
    try:
        fingerprints = {path: _fingerprint(path) for path in watched}
    except OSError:
        return  # a file that cannot be read now could not be compared later
    extra = env_names([*_strings(config_text), *args])
    if extra is None:
        return
    plan = _plan_document(build.plan)
    if _plan_from(json.loads(json.dumps(plan))) != build.plan:
        return  # a param JSON cannot carry exactly: the long way keeps it right
    hydra_dir = build.run_dir / ".hydra"
    hydra_files = {p.name: p.read_text().replace(str(build.run_dir), _RUN_DIR) for p in sorted(hydra_dir.glob("*.yaml"))}
    document = {
        "format": FORMAT,
        "args": args,
        "cwd": str(cwd),
        "python": [sys.executable, sys.version],
        "watched": fingerprints,
        "env_names": extra,
        "env": _environment(env, extra),
        "recipe": build.recipe,
        "cache_dir": str(build.cache_dir),
        "run_dir": template,
        "latest": build.latest is not None,
        "config": build.config,
        "plan": plan,
        "hydra": hydra_files,
    }
    document["seal"] = _seal(document)
    try:
        Cache.write_stamp(build.cache_dir, _name(args, cwd), json.dumps(document))
    except OSError:
        pass  # a shortcut, never a reason to fail a build


def _run_dir_template(pattern: str, build: Build) -> str | None:
    """The run folder pattern with all but its time stamps filled in; None when other
    interpolations remain, or when it does not give the folder Hydra made."""
    template = pattern.replace(RUN_NAME, run_name(build.recipe))
    if "${" in _NOW.sub("", template):
        return None
    literal = "".join(re.escape(part) if i % 2 == 0 else ".+" for i, part in enumerate(_NOW.split(template)))
    made = os.path.relpath(build.run_dir.absolute(), Path.cwd()) if not Path(template).is_absolute() else str(build.run_dir)
    return template if re.fullmatch(literal, made) else None


# -- using, before Hydra -----------------------------------------------------------------------


def rebuild(args: list[str], env: Mapping[str, str]) -> int | None:
    """Build from this command's stamp: the exit code; None when there is no usable stamp."""
    cwd = Path.cwd()
    cache_dir = _cache_dir_for(args, cwd) if usable(args) else None
    if cache_dir is None or not os.access(cache_dir, os.W_OK | os.X_OK):
        return None
    document = _read(Cache.read_stamp(cache_dir, _name(args, cwd)))
    if document is None or document["args"] != args or document["cwd"] != str(cwd):
        return None
    if document["python"] != [sys.executable, sys.version] or document["env"] != _environment(env, document["env_names"]):
        return None
    if not all(_still(path, fingerprint) for path, fingerprint in document["watched"].items()):
        return None
    run_dir = cwd / _NOW.sub(lambda m: datetime.now().strftime(m.group(1)), document["run_dir"])
    try:
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        for name, text in document["hydra"].items():
            (run_dir / ".hydra" / name).write_text(text.replace(_RUN_DIR, str(run_dir)))
    except OSError:
        return None  # Hydra's way says what is wrong with the folder
    config = document["config"]
    build = Build(
        plan=_plan_from(document["plan"]),
        recipe=document["recipe"],
        run_dir=run_dir,
        cache_dir=Path(document["cache_dir"]),
        config=config,
        latest=latest_link(run_dir, document["run_dir"]) if document["latest"] else None,
    )
    return build_exit_code(build)


def _read(text: str | None) -> dict[str, Any] | None:
    """The stamp, if it reads and its seal holds (an edited or truncated one is ignored)."""
    try:
        document = json.loads(text or "")
        seal = document.pop("seal")
    except (ValueError, AttributeError, KeyError, TypeError):
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT or seal != _seal(document):
        return None
    return document


# -- what a stamp stands for -------------------------------------------------------------------


def _name(args: list[str], cwd: Path) -> str:
    return hashlib.sha256(canonical_json([args, str(cwd), sys.executable]).encode()).hexdigest()


def _seal(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def _cache_dir_for(args: list[str], cwd: Path) -> Path | None:
    """Where the cache is, as far as the arguments say (the last cache.dir= wins)."""
    value = DEFAULT_CACHE_DIR
    for arg in args:
        key, sep, given = arg.lstrip("+").partition("=")
        if sep and key == "cache.dir":
            value = given
    if "${" in value or value[:1] in ("'", '"'):
        return None
    return (cwd / Path(value).expanduser()).absolute()


def env_names(texts: Iterable[str]) -> list[str] | None:
    """Every environment variable an `oc.env` in `texts` reads; None when one names its
    variable in a way this cannot read for sure."""
    names: set[str] = set()
    for text in texts:
        found = _OC_ENV.findall(text)
        if len(found) != len(_OC_ENV_USE.findall(text)):
            return None
        names.update(quoted or single or bare for quoted, single, bare in found)
    return sorted(names)


def _strings(config_text: str) -> list[str]:
    """Every key and string value of a config dumped as YAML (the dump quotes and escapes
    them its own way: `'${oc.env:''NAME''}'`)."""
    import yaml

    found: list[str] = []
    stack = [yaml.safe_load(config_text)]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            stack += [*map(str, value), *value.values()]
        elif isinstance(value, list):
            stack += value
    return found


def _environment(env: Mapping[str, str], extra: Iterable[str]) -> dict[str, str | None]:
    names = {name for name in env if _ENV.match(name)} | set(extra)
    return {name: env.get(name) for name in sorted(names)}


def _watched(plan: Plan) -> list[str]:
    """Every file and folder that shaped the composed config and the plan."""
    import hydra
    import omegaconf

    roots = [*config_dirs(), Path(__file__).parent]
    paths = [str(p) for root in roots for p in _tree(root)]
    paths += [hydra.__file__ or "", omegaconf.__file__ or ""]
    paths += [str(p) for step in plan.steps for f in step.files.values() for p in _tree(Path(f))]
    paths += planning_watched()  # the folders themselves: an entry added there changes their stat
    return sorted(set(paths))


def _tree(root: Path) -> list[Path]:
    """`root` and, for a folder, everything under it, through symlinks as hashing reads it
    (bytecode caches aside). What hashing would refuse (a dangling link, a cycle) is watched
    as it is, not entered; a missing root is still watched, so that creating it is noticed."""
    root = root.absolute()
    refused: list[Path] = []
    entries = walk(root, lambda path, why: refused.append(path), prune=_bytecode)
    return [root, *(e.path for e in entries if e.name and not e.name.endswith(".pyc")), *refused]


def _bytecode(name: str) -> bool:
    return name == "__pycache__"


def _fingerprint(path: str) -> dict[str, Any] | None:
    """How a stamp knows `path` again: its stat signature; or, when it changed so recently that
    an edit within the same clock tick could keep that signature (git's "racy" files), its
    content (a folder's: its names). A symlink also by its target's ("target": None for a
    dangling one, which must stay so): editing the file a link names changes only the target.
    None: missing, and must stay so."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    fingerprint = _known_by(path, st, follow=False)
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            fingerprint["target"] = None
        else:
            fingerprint["target"] = _known_by(path, target, follow=True)
    return fingerprint


def _known_by(path: str, st: os.stat_result, follow: bool) -> dict[str, Any]:
    if time.time_ns() - st.st_ctime_ns >= RACY_NS or not _has_content(st):
        return {"stat": list(stat_signature(st))}
    if st.st_size > RACY_CONTENT_LIMIT:
        raise OSError(f"{path} changed a moment ago and is too big to fingerprint by content")
    return {"content": _content_digest(path, follow)}


def _still(path: str, fingerprint: dict[str, Any] | None) -> bool:
    try:
        if fingerprint is None:
            return not os.path.lexists(path)
        st = os.lstat(path)
        if not _same(path, st, fingerprint, follow=False):
            return False
        if not stat.S_ISLNK(st.st_mode):
            return "target" not in fingerprint
        try:
            target = os.stat(path)
        except OSError:
            return fingerprint["target"] is None
        return fingerprint["target"] is not None and _same(path, target, fingerprint["target"], follow=True)
    except (OSError, KeyError, TypeError):
        return False


def _same(path: str, st: os.stat_result, known: dict[str, Any], follow: bool) -> bool:
    if "stat" in known:
        return list(stat_signature(st)) == known["stat"]
    return _has_content(st) and _content_digest(path, follow) == known["content"]


def _has_content(st: os.stat_result) -> bool:
    """Whether content can tell it: a FIFO or a device is never read (it would block)."""
    return stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)


def _content_digest(path: str, follow: bool = False) -> str:
    if not follow and os.path.islink(path):
        content = os.readlink(path).encode()
    elif os.path.isdir(path):
        content = "\0".join(sorted(os.listdir(path))).encode()
    else:
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            content = file.read(RACY_CONTENT_LIMIT + 1)  # it may have grown since its stat
    return hashlib.sha256(content).hexdigest()


# -- the plan, as JSON -------------------------------------------------------------------------


def _plan_document(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name, "kind": s.kind, "params": _tagged(s.params), "inputs": dict(s.inputs),
            "outputs": [vars(o) for o in s.outputs], "files": dict(s.files), "runs_if_failed": s.runs_if_failed,
        }
        for s in plan.steps
    ]


def _plan_from(document: list[dict[str, Any]]) -> Plan:
    steps = []
    for s in document:
        outputs = tuple(OutputSpec(**o) for o in s["outputs"])
        steps.append(StepSpec(s["name"], s["kind"], _untagged(s["params"]), s["inputs"], outputs, s["files"], s["runs_if_failed"]))
    return Plan(tuple(steps))


def _tagged(value: Any) -> Any:
    """JSON for a step's params that keeps tuples tuples (a step may tell them from lists)."""
    if isinstance(value, tuple):
        return {"__tuple__": [_tagged(v) for v in value]}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _tagged(v) for k, v in value.items()}
    return value


def _untagged(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_untagged(v) for v in value["__tuple__"])
        return {k: _untagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untagged(v) for v in value]
    return value
