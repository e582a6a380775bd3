"""The house rules, read from the source with ``ast`` (nothing is imported): no import cycles, no upward imports
between the layers, no torch in the torch-free layer, no imports inside functions but optional heavy ones.

The layers, lowest first (README.md, "Architecture"); a module imports its own layer and the ones below:

====  ==============================================  ===============================================
rank  layer                                           holds
====  ==============================================  ===============================================
0     ``spec/``, ``registry``, ``vocabulary``,        the language, the block schemas, atomic file
      ``files``: the torch-free foundation            writes; no torch, tested in milliseconds
1     ``blocks/`` (``blocks/layers/``)                the modules the registry names
2     ``models/`` and ``data/``, side by side         plan -> nn.Module, weights; .beton files
      (neither imports the other)
3     ``train/``                                      the pieces of the training loop
4     ``tools/``                                      the commands after training, the CLI
5     the façade: ``sdpnet/__init__.py``,             what users import; nothing in the layers imports
      ``_timm_hook.py``, ``__main__.py``              it (import from the module that owns the name)
====  ==============================================  ===============================================

``import sdpnet`` stays torch-free, so the façade's ``__init__`` and ``_timm_hook`` import only the foundation at
module level, and torch (through ``sdpnet.models``) inside the functions that need it; ``__main__`` is the CLI and
may import anything.

Imports are edges from the importing module to the module named: ``from sdpnet.spec import parse`` names
``sdpnet.spec`` (its ``__init__``), ``from sdpnet.spec import tree`` names ``sdpnet.spec.tree``. The parent packages
Python initialises first are not edges (every module would otherwise "import" ``sdpnet/__init__.py``), and
imports under ``if TYPE_CHECKING:`` are not either: they never run.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sdpnet"

# (name, module prefixes, rank), lowest first. A prefix covers the module itself and everything under it.
LAYERS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("foundation", ("sdpnet.spec", "sdpnet.registry", "sdpnet.vocabulary", "sdpnet.files", "sdpnet.plugins"), 0),
    ("blocks", ("sdpnet.blocks",), 1),
    ("models", ("sdpnet.models",), 2),
    ("data", ("sdpnet.data",), 2),
    ("train", ("sdpnet.train",), 3),
    ("tools", ("sdpnet.tools",), 4),
    ("facade", ("sdpnet", "sdpnet._timm_hook", "sdpnet.__main__"), 5),
)

# Modules that must import without torch: the foundation entirely, the façade's import-time part at module level.
TORCH_FREE = ("sdpnet.spec", "sdpnet.registry", "sdpnet.vocabulary", "sdpnet.files", "sdpnet.plugins")
TORCH_FREE_AT_IMPORT = ("sdpnet", "sdpnet._timm_hook")
TORCH = ("torch", "timm", "torchvision")

# Imports allowed inside functions: (importing modules' prefix, imported prefix, why). Optional heavy dependencies
# only, which few commands need (import times measured on the CPU machine of the demo, torch already loaded).
ALLOWED_LAZY: tuple[tuple[str, str, str], ...] = (
    ("sdpnet", "matplotlib", "plots: matplotlib.pyplot takes 0.3-0.5 s; only the commands that draw need it"),
    ("sdpnet", "onnx", "ONNX export: 0.8-0.9 s; only `export --format onnx` needs it"),
    ("sdpnet", "onnxruntime", "ONNX export: only the check of an ONNX export needs it"),
    ("sdpnet", "ffcv", "FFCV (numba, OpenCV): 0.2 s, only writing and reading .beton files need it; imported "
                       "first by sdpnet.data.ffcv_import (test_ffcv_through_its_import_module)"),
    ("sdpnet.data.ffcv_import", "numba", "patched while FFCV imports (sdpnet.data.ffcv_import)"),
    ("sdpnet.data.ffcv_import", "torch", "its thread count is restored after FFCV's import"),
    ("sdpnet._timm_hook", "sdpnet.models", "torch and timm (2 s): `import sdpnet` stays torch-free"),
    ("sdpnet.__init__", "sdpnet.models", "torch (2 s): `import sdpnet` stays torch-free; build() imports it"),
    ("sdpnet.tools.docs", "sdpnet.blocks", "torch (2 s): only the modules table needs the built-in modules; "
                                           "the other tables come from the torch-free registry"),
    ("sdpnet.tools.compare", "sdpnet.models", "torch (2 s): only to count the FLOPs of older runs whose "
                                              "results.json lacks them; a leaderboard of newer runs needs no torch"),
    ("sdpnet.train.tracking", "torch.utils.tensorboard", "tensorboard (1.5 s): only --logging.tensorboard=1 needs "
                                                         "it, and it is optional"),
    ("sdpnet.tools.sweep", "torch", "torch (2 s): only to count GPUs when neither --gpus nor CUDA_VISIBLE_DEVICES "
                                    "names them; a sweep's runs are subprocesses"),
)


@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``importer`` names ``target`` (a dotted module) at ``line``."""

    importer: str
    target: str
    line: int
    lazy: bool          # inside a function
    typing_only: bool   # under ``if TYPE_CHECKING:``


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its own name, for its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, modules: Iterable[str]) -> list[Import]:
    """The imports of module ``name`` (file ``path``), relative ones resolved, ``from a import b`` naming ``a.b`` when
    that is a module of ``modules``."""
    modules = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool, typing_only: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy = True
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, lazy, True)
            for child in node.orelse:
                visit(child, lazy, typing_only)
            return
        if isinstance(node, ast.Import):
            out.extend(Import(name, a.name, node.lineno, lazy, typing_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append(Import(name, sub if sub in modules else base, node.lineno, lazy, typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy, typing_only)

    visit(ast.parse(path.read_text(), str(path)), False, False)
    return out


def all_imports(root: Path) -> list[Import]:
    """The imports of every module of the package at ``root``."""
    modules = module_names(root)   # one edge per statement and module (``from a import b, c`` may name ``a`` twice)
    return list(dict.fromkeys(imp for name, path in modules.items() for imp in imports_of(name, path, modules)))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_cycles(imports: Sequence[Import], package: str) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected group of the package's runtime import graph."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.typing_only and _under(imp.target, package):
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    # Tarjan's strongly connected components, iteratively (no recursion limit on deep graphs)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in graph[node]:
                        groups.append(sorted(group))
    return [_cycle_in(group, graph) for group in sorted(groups)]


def _cycle_in(group: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """The shortest cycle through the group's first module, by breadth-first search inside the group."""
    first, members = group[0], set(group)
    paths = {first: [first]}
    frontier = [first]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == first:
                    return paths[node] + [first]
                if nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {first} in {group}")


def layer_of(module: str, layers: Sequence[tuple[str, tuple[str, ...], int]]) -> tuple[str, int] | None:
    """The (name, rank) of the layer whose prefix covers ``module`` (the longest), or None. A prefix covers the
    module itself and those under it; the package's root name (the façade) covers the root module only."""
    best = None
    for name, prefixes, rank in layers:
        for prefix in prefixes:
            hit = module == prefix if "." not in prefix else _under(module, prefix)
            if hit and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name, rank)
    return (best[1], best[2]) if best else None


def upward_imports(imports: Sequence[Import], layers: Sequence[tuple[str, tuple[str, ...], int]]) -> list[str]:
    """Imports of a higher layer, or of a sibling layer of the same rank, than the importer's."""
    out = []
    for imp in imports:
        src, dst = layer_of(imp.importer, layers), layer_of(imp.target, layers)
        if src is None or dst is None or src[0] == dst[0]:
            continue
        if dst[1] >= src[1]:
            why = "a sibling layer" if dst[1] == src[1] else "a higher layer"
            out.append(f"{imp.importer}:{imp.line} ({src[0]}) imports {imp.target} ({dst[0]}, {why})")
    return out


def torch_imports(imports: Sequence[Import], torch_free: Sequence[str], free_at_import: Sequence[str],
                  heavy: Sequence[str] = TORCH) -> list[str]:
    """Imports of torch (or timm) by torch-free modules, or at module level by modules that must import without it,
    and their module-level imports of package modules that are not torch-free themselves."""
    free = tuple(torch_free) + tuple(free_at_import)
    package = {m.split(".")[0] for m in free}
    out = []
    for imp in imports:
        whole = any(_under(imp.importer, p) for p in torch_free)
        at_import = imp.importer in free_at_import and not imp.lazy
        if imp.typing_only or not (whole or at_import):
            continue
        if any(_under(imp.target, h) for h in heavy):
            out.append(f"{imp.importer}:{imp.line} imports {imp.target}")
        elif imp.target.split(".")[0] in package and not imp.lazy and not (
                any(_under(imp.target, p) for p in torch_free) or imp.target in free_at_import):
            out.append(f"{imp.importer}:{imp.line} imports {imp.target}, which is not torch-free")
    return out


def allowance_used(imp: Import, who: str, what: str) -> bool:
    """Whether the allowance ``(who, what)`` covers ``imp``: an importer prefix that is a package's root name covers
    every module; ``root.__init__`` covers the root only."""
    importer_ok = imp.importer == who[: -len(".__init__")] if who.endswith(".__init__") else _under(imp.importer, who)
    return importer_ok and _under(imp.target, what)


def lazy_imports(imports: Sequence[Import], allowed: Sequence[tuple[str, str, str]]) -> list[str]:
    """Imports inside functions that no ``(importer prefix, imported prefix, why)`` of ``allowed`` covers
    (:func:`allowance_used`)."""
    return [f"{imp.importer}:{imp.line} imports {imp.target} inside a function" for imp in imports
            if imp.lazy and not imp.typing_only and not any(allowance_used(imp, who, what) for who, what, _ in allowed)]


def ffcv_not_through_its_door(imports: Sequence[Import], door: str) -> list[str]:
    """Modules that import ``ffcv`` without importing ``door`` (the module that imports it first) at module level."""
    opened = {imp.importer for imp in imports if imp.target == door and not imp.lazy}
    return [f"{imp.importer}:{imp.line} imports {imp.target} but not {door}" for imp in imports
            if _under(imp.target, "ffcv") and imp.importer != door and imp.importer not in opened]


IMPORTS = all_imports(PACKAGE)


class TestTheHouse:
    def test_no_import_cycles(self) -> None:
        """No module of sdpnet imports itself through others, at module level or inside a function."""
        cycles = import_cycles(IMPORTS, "sdpnet")
        assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)

    def test_no_upward_imports(self) -> None:
        """Each layer imports only itself and the layers below it (models and data are siblings)."""
        bad = upward_imports(IMPORTS, LAYERS)
        assert not bad, "imports against the layers:\n" + "\n".join(bad)

    def test_torch_free_layer(self) -> None:
        """spec/, registry, vocabulary and files import no torch; `import sdpnet` reaches only them."""
        bad = torch_imports(IMPORTS, TORCH_FREE, TORCH_FREE_AT_IMPORT)
        assert not bad, "torch where it must not be:\n" + "\n".join(bad)

    def test_no_imports_inside_functions(self) -> None:
        """Imports sit at the top of the module, but the optional heavy dependencies of ALLOWED_LAZY."""
        bad = lazy_imports(IMPORTS, ALLOWED_LAZY)
        assert not bad, "imports inside functions (move them to the top, or allow a heavy one with a reason):\n" \
            + "\n".join(bad)

    def test_every_allowance_is_used(self) -> None:
        """ALLOWED_LAZY lists only what some function still imports: an allowance nothing needs is removed."""
        unused = [(who, what) for who, what, _ in ALLOWED_LAZY
                  if not any(imp.lazy and allowance_used(imp, who, what) for imp in IMPORTS)]
        assert unused == []

    def test_ffcv_through_its_import_module(self) -> None:
        """Every module that imports FFCV imports sdpnet.data.ffcv_import too (FFCV's import-time workarounds)."""
        assert ffcv_not_through_its_door(IMPORTS, "sdpnet.data.ffcv_import") == []

    def test_every_module_has_a_layer(self) -> None:
        """A new top-level module or folder is placed in LAYERS (and in README.md's Architecture) on purpose."""
        assert [m for m in module_names(PACKAGE) if layer_of(m, LAYERS) is None] == []


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    """A package ``pkg`` under ``root`` with ``files`` (path under pkg/ -> source); ``__init__.py`` files added."""
    pkg = root / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            if parent != Path(".") and not (root / parent / "__init__.py").exists():
                (root / parent / "__init__.py").write_text("")
        path.write_text(text)
    return pkg


PKG_LAYERS = (("low", ("pkg.low",), 0), ("mid", ("pkg.mid",), 1), ("side", ("pkg.side",), 1),
              ("high", ("pkg.high",), 2), ("facade", ("pkg",), 3))


class TestTheChecker:
    """The rules above on small made-up packages: each one reports what it exists to catch."""

    def test_cycle_is_reported(self, tmp_path: Path) -> None:
        """A cycle through a relative import and a ``from pkg import module`` is found and printed in order."""
        pkg = write_package(tmp_path, {"a.py": "from pkg import b\n", "b.py": "def f():\n    from . import c\n",
                                       "c.py": "import pkg.a\n", "d.py": "import pkg.a\n"})
        assert import_cycles(all_imports(pkg), "pkg") == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]

    def test_self_import_and_package_init(self, tmp_path: Path) -> None:
        """A package ``__init__`` importing a module that imports the package's names is a cycle; so is a
        self-import."""
        pkg = write_package(tmp_path, {"sub/__init__.py": "from pkg.sub.x import y\n",
                                       "sub/x.py": "from pkg.sub import z\ny = 1\n", "s.py": "import pkg.s\n"})
        assert import_cycles(all_imports(pkg), "pkg") == [["pkg.s", "pkg.s"], ["pkg.sub", "pkg.sub.x", "pkg.sub"]]

    def test_type_checking_and_parents_are_not_edges(self, tmp_path: Path) -> None:
        """Imports under ``if TYPE_CHECKING:`` and the parent packages Python initialises make no cycle."""
        pkg = write_package(tmp_path, {"__init__.py": "from pkg.a import f\n", "a.py": "from pkg.b import g\nf = g\n",
                                       "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from pkg.a import f\ng = 1\n"})
        assert import_cycles(all_imports(pkg), "pkg") == []

    def test_upward_and_sibling_imports_are_reported(self, tmp_path: Path) -> None:
        """A lower layer importing a higher one, or a sibling of its rank, is reported with both layers."""
        pkg = write_package(tmp_path, {"low/a.py": "def f():\n    import pkg.high.b\n",
                                       "high/b.py": "import pkg.low.a\n",
                                       "mid/c.py": "from pkg.side import d\n", "side/d.py": "",
                                       "high/e.py": "import pkg\n"})
        assert upward_imports(all_imports(pkg), PKG_LAYERS) == [
            "pkg.high.e:1 (high) imports pkg (facade, a higher layer)",
            "pkg.low.a:2 (low) imports pkg.high.b (high, a higher layer)",
            "pkg.mid.c:1 (mid) imports pkg.side.d (side, a sibling layer)"]

    def test_torch_in_the_torch_free_layer_is_reported(self, tmp_path: Path) -> None:
        """torch anywhere in a torch-free module, or at module level in the façade, or a torch-free module's
        import of a module that is not torch-free, is reported; the façade may import torch inside a function."""
        pkg = write_package(tmp_path, {"low/a.py": "def f():\n    import torch.nn\n",
                                       "low/b.py": "from timm.models import x\nimport json\n",
                                       "__init__.py": "import pkg.low.a\nimport pkg.high.c\n"
                                                      "def build():\n    import torch\n",
                                       "high/c.py": "import torch\n"})
        assert torch_imports(all_imports(pkg), ("pkg.low",), ("pkg",)) == [
            "pkg:2 imports pkg.high.c, which is not torch-free", "pkg.low.a:2 imports torch.nn",
            "pkg.low.b:1 imports timm.models"]

    def test_imports_inside_functions_are_reported(self, tmp_path: Path) -> None:
        """An import inside a function or method is reported unless the allow-list covers importer and module."""
        pkg = write_package(tmp_path, {"a.py": "import json\nclass C:\n    def m(self):\n        import csv\n"
                                               "def f():\n    import matplotlib.pyplot\n    from pkg import b\n",
                                       "b.py": "def g():\n    from .a import C\n"})
        allowed = (("pkg", "matplotlib", "heavy"), ("pkg.b", "pkg.a", "a reason"))
        assert lazy_imports(all_imports(pkg), allowed) == ["pkg.a:4 imports csv inside a function",
                                                           "pkg.a:7 imports pkg.b inside a function"]

    def test_ffcv_without_its_import_module_is_reported(self, tmp_path: Path) -> None:
        """A module that imports ffcv, at the top or in a function, without the module that imports it first."""
        pkg = write_package(tmp_path, {"door.py": "def f():\n    import ffcv\n",
                                       "good.py": "from pkg.door import f\nf()\nfrom ffcv.loader import Loader\n",
                                       "bad.py": "def g():\n    from ffcv.fields import IntField\n"})
        assert ffcv_not_through_its_door(all_imports(pkg), "pkg.door") == [
            "pkg.bad:2 imports ffcv.fields but not pkg.door"]


class TestTimmHook:
    """Why ``sdpnet/_timm_hook.py`` exists. sdpnet promises that ``timm.create_model("sdpnet_xl")`` works once
    sdpnet and timm are both imported, in either order (tests/test_presets.py::test_timm_registration_either_order),
    and that ``import sdpnet`` imports neither torch nor timm (test_presets.py::test_import_sdpnet_stays_torch_free,
    test_spec_files.py::test_no_torch_import). timm reads no plugin entry points, so when sdpnet comes first only a
    hook on timm's import can register the presets: these two tests show it."""

    def test_timm_reads_no_entry_points(self) -> None:
        """timm's source never reads package entry points: no other package can register models through it."""
        timm_dir = pytest.importorskip("timm").__path__[0]
        users = [str(p) for p in Path(timm_dir).rglob("*.py") if "entry_points" in p.read_text(errors="replace")]
        assert users == [], "timm now reads entry points: register the presets through them and drop _timm_hook"

    def test_without_the_hook_timm_after_sdpnet_has_no_presets(self) -> None:
        """The same order with the hook taken off sys.meta_path: timm does not know sdpnet_xxs (with it, it does)."""
        pytest.importorskip("timm")
        code = ("import sys, sdpnet, sdpnet._timm_hook as hook\n"
                "assert 'torch' not in sys.modules and 'timm' not in sys.modules\n"
                "sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, hook.RegisterWhenTimmLoads)]\n"
                "import timm\nprint(timm.is_model('sdpnet_xxs'))\n"
                "sdpnet.register_timm()\nprint(timm.is_model('sdpnet_xxs'))\n")
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["False", "True"]
