"""Loading user plugins: task types, input specs, samplers, loss weightings, gradient methods, data formats and
trackers that live outside polytask and register themselves in its registries when imported.

Two ways in, both before any config is read or checkpoint loaded:

- ``polytask --code my_plugins.py COMMAND ...`` (repeatable): a Python file (its folder goes on ``sys.path`` first,
  so it can import its neighbours) or an importable module name (``--code my_pkg.plugins``).
- An installed package that declares an entry point in the group ``polytask.plugins`` (``pyproject.toml``:
  ``[project.entry-points."polytask.plugins"] my_name = "my_pkg.plugins"``). Its value is a module, imported, or a
  function (``"my_pkg.plugins:register"``), called with no arguments. Every command, and the library wherever it
  resolves a plugin name (config validation, checkpoint loading), loads the group once per process.

A plugin that cannot be imported is an error naming the file, module or entry point, what failed and the lines of
the user's own code it failed in; nothing is skipped quietly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from polytask.errors import PolytaskError

if TYPE_CHECKING:
    from polytask.registry import Registry

ENTRY_POINT_GROUP = "polytask.plugins"
HOW_TO_PROVIDE = ("load a plugin with `polytask --code FILE.py|MODULE COMMAND ...` (in Python: import its module "
                  f"first), or install the package that provides it (entry point group {ENTRY_POINT_GROUP!r})")
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_entry_points_loaded = False


class PluginError(PolytaskError, ImportError):
    """A plugin (``--code`` file or module, or an entry point) that could not be loaded."""


def load_code(spec: str) -> ModuleType:
    """Import ``spec``: a ``.py`` file (a path) or a module name; -> the module. Importing it registers its plugins.

    A file is imported as the module named by its stem, with its folder first on ``sys.path``, so a second
    ``--code`` of the same file (or an ``import`` of it by name) finds the module already there instead of
    registering everything twice."""
    path = Path(spec).expanduser()
    if spec.endswith(".py") or "/" in spec or "\\" in spec or path.is_file():
        return _load_file(spec, path)
    if not _MODULE_NAME.fullmatch(spec):
        raise PluginError(f"--code {spec!r}: neither a Python file (FILE.py) nor a module name (e.g. my_pkg.plugins)")
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise PluginError(f"--code {spec!r}: no file of that name, and no importable module {exc.name!r} "
                              "(give a path to a .py file, or install / put on PYTHONPATH the package)") from None
        raise _import_failed(f"--code {spec!r}: importing the module failed", exc) from None
    except Exception as exc:  # noqa: BLE001  (the user's code may raise anything while it is imported)
        raise _import_failed(f"--code {spec!r}: importing the module failed", exc) from None


def _load_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"--code {spec!r}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    if path.suffix != ".py":
        raise PluginError(f"--code {spec!r}: a plugin file must be Python source ending in .py")
    path = path.resolve()
    name = path.stem
    if not _MODULE_NAME.fullmatch(name):
        raise PluginError(f"--code {spec!r}: the file name {path.name!r} is not a valid module name (letters, "
                          "digits and '_', not starting with a digit): rename the file")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if _file_of(loaded) == path:
            return loaded
        raise PluginError(f"--code {spec!r}: a different module named {name!r} is already imported (from "
                          f"{_file_of(loaded) or 'built in'}): rename the file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001  (the user's code may raise anything while it is imported)
        sys.modules.pop(name, None)
        raise _import_failed(f"--code {spec!r}: importing the file {path} failed", exc) from None
    if _file_of(module) != path:  # another module of that name came first on sys.path
        raise PluginError(f"--code {spec!r}: importing {name!r} found {_file_of(module)} first on sys.path: "
                          "rename the file")
    return module


def _file_of(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _import_failed(what: str, exc: BaseException) -> PluginError:
    """``what``, the exception, and the traceback frames of the user's code (polytask's and importlib's dropped)."""
    own = str(Path(__file__).resolve())
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen importlib")
              and Path(f.filename).parent.name != "importlib" and f.filename != own]
    lines = "".join(traceback.format_list(frames)).rstrip()
    detail = f"{type(exc).__name__}: {exc}"
    return PluginError(f"{what}: {detail}" + (f"\nwhere (most recent call last):\n{lines}" if lines else ""))


def load_entry_points() -> list[str]:
    """Load every ``polytask.plugins`` entry point of the installed packages, once per process; -> their names
    (empty on later calls). A failing entry point is an error naming it and its package."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True  # set first: a plugin resolving names while it loads must not recurse
    names = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        where = f"entry point {ep.name!r} = {ep.value!r} of {dist} (group {ENTRY_POINT_GROUP!r})"
        try:
            loaded = ep.load()
            if callable(loaded) and not isinstance(loaded, (ModuleType, type)):
                loaded()
        except Exception as exc:  # noqa: BLE001  (a broken plugin package may raise anything)
            _entry_points_loaded = False
            raise _import_failed(f"{where}: loading it failed (fix or uninstall {dist})", exc) from None
        names.append(ep.name)
    return names


def load_plugins(code: list[str] | None = None) -> list[ModuleType]:
    """What the command line does first: the installed entry points, then each ``--code`` in order."""
    load_entry_points()
    return [load_code(spec) for spec in code or []]


def with_hint_once(problems: list[str]) -> tuple[list[str], str | None]:
    """Config problems with the how-to-load-a-plugin hint of unknown names taken off each, and said once."""
    suffix = f"; {HOW_TO_PROVIDE}"
    if not any(p.endswith(suffix) for p in problems):
        return problems, None
    return [p.removesuffix(suffix) for p in problems], f"A name not registered may be a plugin's: {HOW_TO_PROVIDE}."


def used_plugins(tasks: dict[str, Any], run_config: dict[str, Any] | None) -> dict[str, str]:
    """``"KIND 'NAME'" -> "MODULE (FILE)"`` for every plugin that is not built in and that a model's tasks (their
    types and input specs) or its run config (sampler, weighting, gradients, data formats, trackers, sharing) use: saved in a
    checkpoint's config.json, so an error loading it can say where the missing plugin came from."""
    from polytask.data.inputs import INPUTS
    from polytask.data.readers import READERS
    from polytask.gradients import GRADIENT_METHODS
    from polytask.sampling import SAMPLERS
    from polytask.sharing import SHARING
    from polytask.tasks import TASKS
    from polytask.trackers import TRACKERS
    from polytask.weighting import WEIGHTINGS

    wanted: list[tuple[Registry[Any], Any]] = []
    for task in tasks.values():
        wanted.append((TASKS, task.params.type))
        if task.input is not None:
            wanted.append((INPUTS, task.input.to_dict().get("type")))
    run = run_config or {}
    for key, registry in (("sampler", SAMPLERS), ("weighting", WEIGHTINGS), ("gradients", GRADIENT_METHODS)):
        wanted.append((registry, (run.get(key) or {}).get("name")))
    wanted += [(READERS, (ds or {}).get("format")) for ds in (run.get("datasets") or {}).values()]
    wanted += [(TRACKERS, name) for name in (run.get("train") or {}).get("report_to") or []]
    wanted.append((SHARING, ((run.get("encoder") or {}).get("sharing") or {}).get("name")))
    found = {}
    for registry, name in wanted:
        if isinstance(name, str) and name in registry:
            where = origin(registry.get(name))
            if where != "built-in":
                file = getattr(sys.modules.get(where), "__file__", None)
                found[f"{registry.kind} {name!r}"] = f"{where} ({file})" if file else where
    return found


def saved_plugins_note(checkpoint_config: dict[str, Any]) -> str | None:
    """What a checkpoint's config.json says about the plugins it was saved with, as a sentence (None: none)."""
    saved = checkpoint_config.get("plugins") or {}
    if not saved:
        return None
    return "The checkpoint was saved with these plugins loaded: " + "; ".join(
        f"{what} from {where}" for what, where in saved.items()) + "."


def origin(item: object) -> str:
    """Where a registered plugin comes from: ``built-in`` or its module's name (for ``polytask list``)."""
    module = getattr(item, "__module__", None) or ""
    return "built-in" if module == "polytask" or module.startswith("polytask.") else module or "?"
