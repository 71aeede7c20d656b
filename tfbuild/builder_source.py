"""A user's model builder (`model._target_=package.module.function`), found and keyed without
running any of its code.

Recipes are code: training imports the named module and calls the function. Planning (and so a
dry run) only reads files: it finds the module the way Python's path finder would (the folder
tfbuild runs in first), one package at a time, never executing a package's `__init__`; parses
it to check that the function is defined there and takes the given params; and follows its
imports, so that every file of the user's own code the builder uses enters the training key.

Standard-library modules and tfbuild's own are refused as builders: `shutil.rmtree` is not a
model. A builder from an installed package is allowed (a team's models package); its files
and its distribution's version enter the key.
"""

from __future__ import annotations

import ast
import functools
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Iterator, Sequence

from .errors import ConfigError, did_you_mean
from .project import watch_for_planning

KEY = "model._target_"
# The builder is called as builder(input_shape, num_classes, **model.params).
POSITIONAL = 2
_TRY_STAR = (ast.TryStar,) if hasattr(ast, "TryStar") else ()


@dataclass(frozen=True)
class BuilderSource:
    target: str
    files: dict[str, str]  # key role -> path: "builder", "builder:helpers/layers.py", ...
    distribution: str | None = None  # "name==version" when the builder is an installed package's


@dataclass(frozen=True)
class Params:
    names: tuple[str, ...]  # what model.params may set
    required: tuple[str, ...]  # what it must set (no default)
    any_name: bool = False  # **kwargs


@dataclass(frozen=True)
class Module:
    name: str
    file: Path
    root: Path  # the search-path folder it was found under
    package_files: tuple[tuple[str, Path], ...] = field(default=())  # the __init__.py on the way
    is_package: bool = False


def user_builder(target: str, params: Sequence[str], search_path: Sequence[str] | None = None) -> BuilderSource:
    """Find, check and key `target`; raises ConfigError naming what is wrong."""
    module_name, _, attr = target.rpartition(".")
    if not module_name or not attr or not all(part.isidentifier() for part in target.split(".")):
        raise ConfigError(f"{KEY}: '{target}' is not of the form package.module.function")
    _refuse_foreign(module_name, f"'{module_name}'")
    top = module_name.split(".")[0]
    path = list(sys.path if search_path is None else search_path)
    module = find_module(module_name, path)
    if module is None:
        raise ConfigError(f"{KEY}: cannot import module '{module_name}' (not found on PYTHONPATH "
                          "or in the folder you run tfbuild from)")  # fmt: skip
    if where(module.file) == "stdlib":
        raise ConfigError(f"{KEY}: '{module_name}' is a standard-library module, not a model builder")
    signature = builder_params(module, attr, path)
    if signature is not None:
        check_params(signature, params, target)
    if where(module.file) == "installed":
        # An installed package is keyed by its version (and the builder's own file); its own
        # files are walked only when no distribution claims it.
        distribution = installed_distribution(top, module.root)
        if distribution is not None:
            return BuilderSource(target, {"builder": str(module.file)}, distribution)
        return BuilderSource(target, key_files(module, path, installed_package=top))
    return BuilderSource(target, key_files(module, path))


def _refuse_foreign(module_name: str, what: str) -> None:
    """The standard library and tfbuild hold no model builders (`shutil.rmtree` is not one)."""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names:
        raise ConfigError(f"{KEY}: {what} is a standard-library module, not a model builder "
                          "(name your own function, e.g. my_models.build)")  # fmt: skip
    if top == __package__:
        raise ConfigError(f"{KEY}: {what} is tfbuild itself, not a model builder "
                          "(the bundled models are model=cnn and model=mlp)")  # fmt: skip


def find_module(name: str, path: Sequence[str]) -> Module | None:
    """The file Python would import for `name`, found one package at a time with the path
    finder, which only looks at folders (`importlib.util.find_spec` would import, and so run,
    the parent packages)."""
    locations = [entry or "." for entry in path]
    package_files: list[tuple[str, Path]] = []
    parts = name.split(".")
    root: Path | None = None
    for depth, part in enumerate(parts, start=1):
        # By its last part alone: a dotted name makes a namespace spec look its parent up
        # among the imported modules. The finder only reads that part of the name anyway.
        spec = PathFinder.find_spec(part, locations)
        if spec is None:
            return None
        # A namespace package has no file; its folders are those named `part` (asking the
        # spec would look its parent up among the imported modules).
        file = Path(spec.origin) if spec.has_location and spec.origin else None
        folders = [str(Path(entry) / part) for entry in locations if (Path(entry) / part).is_dir()]
        root = root or _search_root(file or Path(folders[0]), path)
        if spec.submodule_search_locations is None:  # a plain module: it must be the last part
            if depth < len(parts) or file is None:
                return None
            return Module(name, file, root, tuple(package_files))
        if depth == len(parts):  # a package: its __init__.py holds the builder
            return Module(name, file, root, tuple(package_files), is_package=True) if file else None
        if file is not None:
            package_files.append((".".join(parts[:depth]), file))
            folders = [str(file.parent)]
        locations = folders
    return None


def absent_locations(name: str, path: Sequence[str]) -> list[Path]:
    """Where the module `name`, which `find_module` does not find, would appear if a user
    made it: the project-side folders (not the standard library's, not installed packages')
    that Python's path finder looked into for the part of the name it could not find. A new
    module there adds an entry to the folder, which changes its stat. Empty where it could
    never appear (a part of the name is a plain module, which has no submodules)."""
    locations = [entry or "." for entry in path]
    for depth, part in enumerate(name.split("."), start=1):
        spec = PathFinder.find_spec(part, locations)
        if spec is None:
            folders = [Path(entry).absolute() for entry in locations if Path(entry).is_dir()]
            return [folder for folder in folders if where(folder) == "project"]
        if spec.submodule_search_locations is None:
            return []
        if spec.has_location and spec.origin and depth < len(name.split(".")):
            locations = [str(Path(spec.origin).parent)]
        else:
            locations = [str(Path(entry) / part) for entry in locations if (Path(entry) / part).is_dir()]
    return []


def _search_root(file: Path, path: Sequence[str]) -> Path:
    """The search-path folder `file` was found under (role names are relative to it): the
    deepest entry holding it, since a project folder on the path may hold a virtualenv whose
    site-packages is another entry."""
    holding = [Path(entry or ".").absolute() for entry in path]
    holding = [folder for folder in holding if file.absolute().is_relative_to(folder)]
    return max(holding, key=lambda folder: len(folder.parts), default=file.parent)


def where(file: Path) -> str:
    """"installed" (site-packages, dist-packages), "stdlib", or "project" (the user's own).
    Installed first: a system Python's site-packages lies inside its standard library folder."""
    resolved = file.resolve()
    installed, stdlib = _install_folders()
    if any(part in ("site-packages", "dist-packages") for part in resolved.parts) or any(
        resolved.is_relative_to(folder) for folder in installed
    ):
        return "installed"
    if any(resolved.is_relative_to(folder) for folder in stdlib):
        return "stdlib"
    return "project"


@functools.cache
def _install_folders() -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    paths = sysconfig.get_paths()
    return (
        tuple(Path(paths[key]).resolve() for key in ("purelib", "platlib")),
        tuple(Path(paths[key]).resolve() for key in ("stdlib", "platstdlib")),
    )


def builder_params(module: Module, attr: str, path: Sequence[str], hops: int = 3) -> Params | None:
    """The parameters of `attr`, a top-level name of `module`, read from its source. Follows a
    re-export (`from .cnn import build`) to the defining module; None for a name bound another
    way (an assignment, a class), whose parameters cannot be read without running it."""
    tree = parse_source(module.file)
    defined: dict[str, ast.stmt] = {}
    for statement in top_level(tree.body):
        for name in _bound_names(statement):
            defined.setdefault(name, statement)
    if attr not in defined:
        functions = [name for name, s in defined.items() if isinstance(s, ast.FunctionDef) and name[0] != "_"]
        hint = did_you_mean(attr, defined) or f" (its functions: {', '.join(functions) or 'none'})"
        raise ConfigError(f"{KEY}: module '{module.name}' ({module.file}) defines no '{attr}'{hint}")
    statement = defined[attr]
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return signature(statement.args)
    if isinstance(statement, ast.ImportFrom):
        source = _imported_module(module, statement)
        original = next(a.name for a in statement.names if (a.asname or a.name) == attr)
        if source:  # a re-export: `from shutil import rmtree as build` is still shutil's
            _refuse_foreign(source, f"'{module.name}.{attr}' comes from '{source}', which")
            found = find_module(source, path)
            if found is not None and hops:
                return builder_params(found, original, path, hops - 1)
    return None


def top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those under if/try/with (`if TF2: def build...`)."""
    for statement in body:
        yield statement
        if isinstance(statement, (ast.If, ast.Try, ast.With, *_TRY_STAR)):
            for block in ("body", "orelse", "finalbody"):
                yield from top_level(getattr(statement, block, []))
            for handler in getattr(statement, "handlers", []):
                yield from top_level(handler.body)


def _bound_names(statement: ast.stmt) -> list[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in statement.names if a.name != "*"]
    if isinstance(statement, ast.Assign):
        return [n.id for target in statement.targets for n in ast.walk(target) if isinstance(n, ast.Name)]
    if isinstance(statement, (ast.AnnAssign, ast.AugAssign)) and isinstance(statement.target, ast.Name):
        return [statement.target.id]
    return []


def signature(args: ast.arguments, by_position: int = POSITIONAL) -> Params:
    """What keyword arguments a `def` takes; the first `by_position` are passed by position
    (a builder's input_shape and num_classes) and are not the user's to set."""
    positional = [*args.posonlyargs, *args.args]
    defaults_from = len(positional) - len(args.defaults)
    # Positional-only parameters after those passed by position cannot be passed by name.
    keyword = [(a.arg, i >= defaults_from) for i, a in enumerate(positional) if i >= max(by_position, len(args.posonlyargs))]
    keyword += [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return Params(
        names=tuple(name for name, _ in keyword),
        required=tuple(name for name, has_default in keyword if not has_default),
        any_name=args.kwarg is not None,
    )


def check_params(signature: Params, params: Sequence[str], target: str) -> None:
    for key in params:
        if key not in signature.names and not signature.any_name:
            allowed = ", ".join(signature.names) or "none"
            raise ConfigError(f"model.params.{key}: not a parameter of {target} (allowed: {allowed})"
                              f"{did_you_mean(key, signature.names)}")  # fmt: skip
    missing = [name for name in signature.required if name not in params]
    if missing:
        raise ConfigError(f"{KEY}: {target} needs model.params.{missing[0]} (it has no default)")


def key_files(
    module: Module, path: Sequence[str], installed_package: str | None = None, role: str = "builder", key: str = KEY
) -> dict[str, str]:
    """role -> file for the builder's module and every file of the user's code it imports,
    transitively (package `__init__.py` files on the way included). Other installed packages
    and the standard library are keyed by tool versions, not here. For a builder from an
    installed package, that package's own files count as the user's code. Roles are `role`
    for the module itself and `role:relative/path.py` for the others.

    An import that finds nothing (`try: from helpers_opt import WIDTH except ImportError:`)
    keys nothing; the project folders where that module would appear are noted for the no-op
    stamp (project.watch_for_planning), so that the command after it appears plans again and
    this key then holds it."""

    def ours(found: Module) -> bool:
        kind = where(found.file)
        return kind == "project" or (kind == "installed" and found.name.split(".")[0] == installed_package)

    files: dict[Path, Path] = {}  # file -> its search root
    missing: set[Path] = set()  # folders where an import that found nothing would find its module
    queue = [module]
    while queue:
        current = queue.pop()
        if current.file in files:
            continue
        files[current.file] = current.root
        # Importing a module runs its packages' __init__.py first: their imports count too.
        queue += [Module(name, init, current.root, is_package=True) for name, init in current.package_files]
        for name in imported_modules(current, key):
            found = find_module(name, path)
            if found is None:
                missing.update(absent_locations(name, path))
            elif ours(found):
                queue.append(found)
    watch_for_planning(sorted(missing))
    roles: dict[str, str] = {}
    for file, root in files.items():
        roles[role if file == module.file else f"{role}:{_relative(file, root)}"] = str(file.absolute())
    return dict(sorted(roles.items()))


def _relative(file: Path, root: Path) -> str:
    try:
        return file.absolute().relative_to(root).as_posix()
    except ValueError:
        return file.as_posix()


def imported_modules(module: Module, key: str = KEY) -> list[str]:
    """Every module the file imports, anywhere in it (inside functions too), as absolute
    names; `from package import name` also yields `package.name`, which may be a module."""
    names: list[str] = []
    for node in ast.walk(parse_source(module.file, key)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                names += [".".join(parts[: i + 1]) for i in range(len(parts))]
        elif isinstance(node, ast.ImportFrom):
            source = _imported_module(module, node)
            if source:
                names.append(source)
                names += [f"{source}.{a.name}" for a in node.names if a.name != "*"]
    return list(dict.fromkeys(names))


def _imported_module(module: Module, node: ast.ImportFrom) -> str | None:
    """The absolute name of the module a `from ... import` reads; None for a relative import
    past the top package (an error in Python too)."""
    if not node.level:
        return node.module
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    if node.level > len(package):
        return None
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def parse_source(file: Path, key: str = KEY) -> ast.Module:
    """The file's syntax tree; errors name `key`, the setting that led to the file."""
    try:
        return ast.parse(file.read_bytes(), filename=str(file))
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot parse {file}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {file} ({exc.strerror})") from None


def installed_distribution(top: str, site_dir: Path) -> str | None:
    """`name==version` of the installed distribution that provides the import name `top`,
    from the `.dist-info` folders beside it (reading only their small metadata files)."""
    from importlib.metadata import PathDistribution

    wanted = top.lower().replace("-", "_")
    for info in sorted(site_dir.glob("*.dist-info")):
        distribution = PathDistribution(info)
        provides = (distribution.read_text("top_level.txt") or "").split()
        name = distribution.metadata["Name"] or ""
        if top in provides or name.lower().replace("-", "_").replace(".", "_") == wanted:
            return f"{name}=={distribution.version}"
    return None
