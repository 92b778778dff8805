"""Build hook: compiles the optional C speedups (``middleware/pinsignal/_speedups.c``).

pinsignal works the same without them (``pinsignal/asgi.py`` holds the Python reference), so a
machine without a C compiler gets a warning and the pure-Python package, never a failed install.
``PINSIGNAL_PURE_PYTHON=1`` skips the build. An editable install puts the module beside its source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("middleware") / "pinsignal" / "_speedups.c"


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        if version == "editable":  # an earlier editable install's module must not outlive this one
            for stale in (root / SOURCE.parent).glob("_speedups.*.so"):
                stale.unlink()
        if os.environ.get("PINSIGNAL_PURE_PYTHON"):
            return
        try:
            built = _compile(root / SOURCE, root / "build" / "speedups")
        except Exception as error:  # no compiler, no headers: the Python code does the same work
            self.app.display_warning(f"pinsignal: C speedups not built ({error}); using the pure-Python code")
            return
        if version == "editable":
            shutil.copy2(built, root / SOURCE.parent / built.name)
        else:
            build_data["force_include"][str(built)] = f"pinsignal/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True


def _compile(source: Path, folder: Path) -> Path:
    """The extension built by setuptools (which knows each platform's compiler and flags)."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension("pinsignal._speedups", [str(source)])
    command = build_ext(Distribution({"name": "pinsignal", "ext_modules": [extension]}))
    command.build_lib = str(folder / "lib")
    command.build_temp = str(folder / "temp")
    command.ensure_finalized()
    command.run()
    return Path(command.get_ext_fullpath(extension.name))
