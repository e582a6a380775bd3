"""The shipped spec files (``specs/*.json``, ``specs/zoo/*.json``) by name (``sdpnet_xl``). No torch.

Every spec file is known by its ``"name"``, prefixed with ``sdpnet_`` when it does not start with it
(``specs/zoo/vit_tiny_patch16_224.json`` is ``sdpnet_vit_tiny_patch16_224``, so timm's own
``vit_tiny_patch16_224`` is never shadowed). The same names are the timm model names
(:mod:`sdpnet.models.timm_models`), and :func:`sdpnet.build`, :func:`sdpnet.load_spec` and the command line take them
wherever they take a spec.

``specs/`` sits at the top of the repository and is what ships: a wheel carries it as package data at
``sdpnet/specs`` (``pyproject.toml`` maps the package ``sdpnet.specs`` to the folder ``specs``). At run time
the files are found there, or, in a source checkout (plain or editable install), in ``specs/`` next to the
package, whatever the current directory.
"""
from __future__ import annotations

import fnmatch
import functools
import json
from pathlib import Path

PREFIX = "sdpnet_"


def specs_dir() -> Path:
    """The folder of the shipped spec files: ``sdpnet/specs`` when installed from a wheel, else ``<repo>/specs``."""
    package = Path(__file__).resolve().parents[1]   # sdpnet/
    for candidate in (package / "specs", package.parent / "specs"):
        if (candidate / "zoo").is_dir():
            return candidate
    raise FileNotFoundError(f"sdpnet's spec files are missing: neither {package / 'specs'} (an installed wheel) "
                            f"nor {package.parent / 'specs'} (a source checkout) exists; reinstall sdpnet")


def spec_files() -> list[Path]:
    """The preset spec files: ``specs/*.json`` then ``specs/zoo/*.json``, each sorted."""
    root = specs_dir()
    return sorted(root.glob("*.json")) + sorted((root / "zoo").glob("*.json"))


def preset_name(spec_name: str) -> str:
    """The preset (and timm) name of a spec named ``spec_name``: ``sdpnet_`` prefixed unless it already is."""
    return spec_name if spec_name.startswith(PREFIX) else PREFIX + spec_name


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in spec_files():
        with open(path) as f:
            name = preset_name(str(json.load(f).get("name") or path.stem))
        if name in index:
            raise ValueError(f"{path} and {index[name]} are both named {name!r}; rename one of the spec files")
        index[name] = path
    return index


def presets() -> dict[str, Path]:
    """``{preset name: spec file}`` for every shipped spec file."""
    return dict(_index())


def preset_path(name: str) -> Path | None:
    """The spec file of the preset ``name`` (``sdpnet_xl``), or None when there is no such preset."""
    return _index().get(name)


def list_models(pattern: str = "*") -> list[str]:
    """The preset names matching the shell-style ``pattern`` (as ``timm.list_models``), sorted."""
    return sorted(n for n in _index() if fnmatch.fnmatchcase(n, pattern))


__all__ = ["PREFIX", "list_models", "preset_name", "preset_path", "presets", "spec_files", "specs_dir"]
