"""Discovered inputs with fake steps: what a step reads past its key (a module found through
importlib, after sys.path.insert, an optional import, a file opened by name) is recorded in
its manifest, checked on every hit, and a file it may not read is refused."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tfbuild import discovered
from tfbuild.cache import Cache
from tfbuild.plan import OutputSpec, StepSpec, make_plan
from tfbuild.remote_cache import RemoteCache
from tfbuild.remote_sync import RemoteSync
from tfbuild.runner import BUILT, CACHED, FAILED, run_plan
from tfbuild.worker_pool import WorkerPool

from tests.fakes import edit_manifest


class CodeStep:
    """Runs its `code` param (what a builder would do) and writes the value of `result`."""

    kind = "code"
    version = 1
    tools = ("pytest",)

    def __init__(self, runs: Counter | None = None):
        self.runs = runs if runs is not None else Counter()

    def run(self, ctx) -> dict[str, Any]:
        self.runs[ctx.spec.name] += 1
        scope: dict[str, Any] = {"ctx": ctx}
        exec(ctx.params["code"], scope)
        ctx.outputs["out"].write_text(str(scope.get("result")))
        return {"result": scope.get("result")}


def code_step(code: str, files: dict[str, str] | None = None, name: str = "train", kind: str = "code") -> StepSpec:
    return StepSpec(name=name, kind=kind, params={"code": code}, files=files or {},
                    outputs=(OutputSpec(role="out", artifact=name, path="out.txt"),))  # fmt: skip


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder, the current folder; the modules and sys.path entries a test
    adds are dropped after it (a fresh tfbuild process would not have them)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    modules, path = set(sys.modules), list(sys.path)
    sys.path.insert(0, str(root))  # as the CLI does: builders are found from where it runs
    yield root
    forget(root, modules)
    sys.path[:] = path


def forget(root: Path, keep: set[str] = frozenset()) -> None:
    """Drop the modules imported from `root`, as a new process would not have them."""
    for name, module in list(sys.modules.items()):
        if name not in keep and str(getattr(module, "__file__", "") or "").startswith(str(root)):
            del sys.modules[name]
    importlib.invalidate_caches()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def build(cache: Cache, spec: StepSpec, runs: Counter | None = None, **kwargs):
    kinds = {"code": CodeStep(runs), "data": CodeStep(runs)}  # "data": its refusals name data.path
    return run_plan(make_plan([spec]), cache, kinds, scope="recipe", **kwargs).steps[0]


# What a builder does to reach past its key, the file it reaches, and the edit that must rebuild.
REACHES = {
    "importlib": ({"helpers/__init__.py": "", "helpers/width.py": "WIDTH = 3\n"},
                  "import importlib\nresult = importlib.import_module('helpers.width').WIDTH",
                  "helpers/width.py", "WIDTH = 5\n", "input changed (read: helpers/width.py)"),
    "sys.path.insert": ({"lib/width_lib.py": "WIDTH = 3\n"},
                        "import sys\nsys.path.insert(0, 'lib')\nimport width_lib\nresult = width_lib.WIDTH",
                        "lib/width_lib.py", "WIDTH = 5\n", "input changed (read: lib/width_lib.py)"),
    "optional import": ({},
                        "try:\n    from helpers_opt import WIDTH\nexcept ImportError:\n    WIDTH = 3\nresult = WIDTH",
                        "helpers_opt.py", "WIDTH = 5\n", "input changed (appeared: helpers_opt.py)"),
    "optional submodule": ({"helpers/__init__.py": ""},
                           "try:\n    from helpers.extra import WIDTH\nexcept ImportError:\n    WIDTH = 3\nresult = WIDTH",
                           "helpers/extra/__init__.py", "WIDTH = 5\n", "input changed (appeared: helpers/extra)"),
    "source opened": ({"width_expr.py": "3\n"}, "result = eval(open('width_expr.py').read())",
                      "width_expr.py", "5\n", "input changed (read: width_expr.py)"),
    "imported earlier in the process": ({"early.py": "WIDTH = 3\n"}, "import early\nresult = early.WIDTH",
                                        "early.py", "WIDTH = 5\n", "input changed (read: early.py)"),
}  # fmt: skip


@pytest.mark.parametrize("jobs", [1, 2], ids=["inline", "workers"])
@pytest.mark.parametrize("how", list(REACHES))
def test_what_a_step_reaches_past_its_key_is_checked_on_every_hit(project, tmp_path, how, jobs):
    files, code, edited, text, reason = REACHES[how]
    write(project, files)
    if how == "imported earlier in the process":
        if jobs > 1:
            pytest.skip("a worker process imports nothing of the project before its job")
        importlib.import_module("early")  # no import event during the job: sys.modules tells
    cache, spec, runs = Cache(tmp_path / "cache"), code_step(code), Counter()
    workers = WorkerPool(jobs, preload=None) if jobs > 1 else None
    try:
        first = build(cache, spec, runs, workers=workers)
        assert (first.status, first.info) == (BUILT, {"result": 3}), first.error
        assert build(cache, spec, runs, workers=workers).status == CACHED
        manifest = json.loads((first.entry.root / "manifest.json").read_text())
        record = manifest["discovered"]
        assert edited in record["read"] or any(edited == a or edited.startswith(f"{a}/") for a in record["absent"])

        write(project, {edited: text})
        forget(project)  # the next tfbuild is a new process
        if workers is not None:
            workers.close()
            workers = WorkerPool(jobs, preload=None)
        again = build(cache, spec, runs, workers=workers)
        assert (again.status, again.reason, again.info) == (BUILT, reason, {"result": 5})
        assert again.key == first.key  # same key: the rebuilt entry replaced the stale one
        assert (cache.entry_dir(first.key) / "out" / "out.txt").read_text() == "5"
        assert build(cache, spec, runs, workers=workers).status == CACHED
        assert runs["train"] == (2 if jobs == 1 else 0)  # workers count in their own process
    finally:
        if workers is not None:
            workers.close()


@pytest.mark.parametrize(
    "code, shown",
    [
        ("result = open('settings.json').read()", "settings.json"),
        ("from pathlib import Path\nresult = Path('conf/width.txt').read_text()", "conf/width.txt"),
        ("import os\nos.close(os.open('settings.json', os.O_RDONLY))", "settings.json"),
        ("try:\n    open('settings.json')\nexcept Exception:\n    result = 3", "settings.json"),  # swallowed
        ("result = open('helpers/../settings.json', 'a+').read()", "settings.json"),
        ("import numpy\nresult = numpy.load('weights.npy')", "weights.npy"),
        ("result = open(ctx.files['data'].parent / 'other.txt').read()", "{data}/other.txt"),
    ],
)  # fmt: skip
def test_a_file_read_past_the_key_is_refused(project, tmp_path, code, shown):
    write(project, {"settings.json": "{}", "conf/width.txt": "3", "helpers/x.py": "", "weights.npy": ""})
    data = tmp_path / "data"
    write(data, {"part.txt": "1", "other.txt": "2"})
    cache, runs = Cache(tmp_path / "cache"), Counter()
    result = build(cache, code_step(code, {"data": str(data / "part.txt")}), runs)
    assert result.status == FAILED and result.bad_input
    expected = f"read {shown.format(data=data)}, which is not among its inputs: declare it with model.files"
    assert result.error == expected
    assert list(cache.root.glob("entries/*/*")) == []  # nothing was cached
    data_step = build(cache, code_step("result = open('settings.json').read()", kind="data", name="data"))
    assert data_step.error.endswith("declare it with data.path (or data.train/validation/test)")


def test_declared_files_and_places_that_hold_no_inputs_are_read_freely(project, tmp_path):
    write(project, {"data/part.txt": "1", "node_modules/x/index.js": "//"})
    code = """
import json, site, tempfile
from pathlib import Path
with tempfile.NamedTemporaryFile('w+') as scratch:
    scratch.write('x'); scratch.flush(); open(scratch.name).read()
open(json.__file__).read()  # the standard library
open(ctx.files['data']).read()
open('node_modules/x/index.js').read()
open(ctx.outputs['out'], 'w').write('x'); open(ctx.outputs['out']).read()
result = sum(1 for _ in Path('outputs/cache/entries').rglob('*'))  # the cache (inside the project here)
open('written.txt', 'w').write('a write is no read')
"""
    cache = Cache(project / "outputs" / "cache")
    first = build(cache, code_step("result = 1", name="data"))
    reader = StepSpec(name="train", kind="code", params={"code": code + "\nopen(ctx.inputs['data']).read()"},
                      inputs={"data": "data"}, files={"data": str(project / "data/part.txt")},
                      outputs=(OutputSpec(role="out", artifact="train", path="out.txt"),))  # fmt: skip
    result = run_plan(make_plan([code_step("result = 1", name="data"), reader]), cache, {"code": CodeStep()}).steps[1]
    assert result.status == BUILT, result.error
    assert json.loads((result.entry.root / "manifest.json").read_text())["discovered"] == {"read": {}, "absent": []}
    assert first.status == BUILT


def test_the_hook_is_installed_by_the_first_job_only(project, tmp_path):
    """A fully cached build runs no job, so the audit hook (which cannot be removed) is never
    added: checked in a fresh process."""
    program = """
import sys
from pathlib import Path
from tfbuild import discovered
from tfbuild.cache import Cache
from tfbuild.runner import run_plan
from tfbuild.plan import make_plan
from tests.unit.test_discovered import CodeStep, code_step
result = run_plan(make_plan([code_step("result = 1")]), Cache(Path(sys.argv[1])), {"code": CodeStep()})
print(result.steps[0].status, discovered._installed)
"""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    ran = [subprocess.run([sys.executable, "-c", program, str(tmp_path / "cache")], capture_output=True, text=True,
                          env=env, check=True).stdout.split() for _ in range(2)]  # fmt: skip
    assert ran == [["built", "True"], ["cached", "False"]]


# -- the record in the manifest -----------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda m: m.update(discovered="x"), "cache entry incomplete"),
        (lambda m: m.update(discovered={"read": {}}), "cache entry incomplete"),
        (lambda m: m["discovered"]["read"].update({"../outside.py": "0" * 64}), "leaves its folder"),
        (lambda m: m["discovered"]["read"].update({"/etc/passwd": "0" * 64}), "leaves its folder"),
        (lambda m: m["discovered"]["read"].update({"a.py": "not a digest"}), "is not a SHA-256"),
        (lambda m: m["discovered"]["absent"].append("a/../../b"), "leaves its folder"),
        (lambda m: m["discovered"]["absent"].append(3), "cache entry incomplete"),
    ],
)  # fmt: skip
def test_a_damaged_record_is_refused_and_rebuilt(project, tmp_path, damage, problem):
    cache = Cache(tmp_path / "cache")
    first = build(cache, code_step("result = 1"))
    edit_manifest(first.entry.root, damage)
    again = build(cache, code_step("result = 1"))
    assert again.status == BUILT and problem in again.reason, again.reason


def test_an_entry_without_a_record_or_naming_a_fifo_is_a_miss(project, tmp_path):
    write(project, {"width.py": "WIDTH = 3\n"})
    cache, spec = Cache(tmp_path / "cache"), code_step("import width\nresult = width.WIDTH")
    first = build(cache, spec)
    edit_manifest(first.entry.root, lambda m: {k: v for k, v in m.items() if k != "discovered"})
    again = build(cache, spec)
    assert (again.status, again.reason) == (BUILT, "built before tfbuild recorded what steps read")
    forget(project)
    (project / "width.py").unlink()
    os.mkfifo(project / "width.py")  # a hit must not read it (it would block)
    result = run_plan(make_plan([spec]), cache, {"code": CodeStep()}, dry_run=True).steps[0]
    assert result.reason == "input changed (read: width.py)"


def test_a_remote_entry_is_served_only_where_what_its_step_read_matches(tmp_path, monkeypatch):
    """Two checkouts in different folders share entries (paths are relative to the project);
    one whose helper differs builds its own."""
    remote = f"file://{tmp_path / 'remote'}"
    code = "import importlib\nresult = importlib.import_module('helper').WIDTH"
    modules, path = set(sys.modules), list(sys.path)

    def machine(name: str, width: int):
        root = tmp_path / name
        write(root, {"helper.py": f"WIDTH = {width}\n"})
        monkeypatch.chdir(root)
        sys.path.insert(0, str(root))
        cache = Cache(tmp_path / f"{name}-cache")
        sync = RemoteSync(cache, RemoteCache(remote), "readwrite", lambda text: None)
        try:
            result = build(cache, code_step(code), remote=sync)
            sync.upload([result.entry])
        finally:
            forget(root, modules)
            sys.path[:] = path
        return result

    assert machine("ci", 3).status == BUILT
    same = machine("laptop", 3)
    assert (same.status, same.reason, same.info) == (CACHED, "downloaded from the remote cache", {"result": 3})
    other = machine("desktop", 5)
    assert (other.status, other.info) == (BUILT, {"result": 5})


def test_the_audit_log_lists_every_watched_read(project, tmp_path, monkeypatch):
    log = tmp_path / "audit.log"
    monkeypatch.setenv(discovered.AUDIT_LOG, str(log))
    write(project, {"helpers/__init__.py": "", "helpers/width.py": "WIDTH = 3\n", "data.txt": "1"})
    spec = code_step("import importlib\nresult = importlib.import_module('helpers.width').WIDTH + int(open(ctx.files['data']).read())",
                     {"data": str(project / "data.txt")})  # fmt: skip
    assert build(Cache(tmp_path / "cache"), spec).status == BUILT
    read = {line.split("\t")[1] for line in log.read_text().splitlines()}
    assert {str(project / "helpers/width.py"), str(project / "data.txt")} <= read


def test_a_file_a_step_looked_for_and_did_not_find_is_a_change_when_it_appears(project, tmp_path):
    """`try: open('width.txt')` that fell back: the file appearing reruns the step, which is
    then refused, since the file is not declared."""
    cache = Cache(tmp_path / "cache")
    spec = code_step("try:\n    result = int(open('width.txt').read())\nexcept FileNotFoundError:\n    result = 3")
    assert build(cache, spec).info == {"result": 3}
    assert build(cache, spec).status == CACHED
    write(project, {"width.txt": "5"})
    again = build(cache, spec)
    assert (again.status, again.reason) == (FAILED, "input changed (appeared: width.txt)")
    assert again.error == "read width.txt, which is not among its inputs: declare it with model.files"
