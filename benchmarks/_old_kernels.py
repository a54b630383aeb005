"""The kernels of an earlier git revision, built into a scratch directory for a side-by-side timing.

`load(revision)` takes `delgrad_core/_layer.pyx`, `_psp.pxd` and `_propagation.py` of that
revision (`git show`), compiles the extension with Cython and the C compiler with the flags the
project's meson build used then (release: -O3, C11, OpenMP; no -march), and returns that
revision's `_propagation` module with its compiled kernels, so that `forward`/`backward` of the
old revision run on today's IR objects.  Nothing here is imported by the package.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

# The old _propagation imports today's IR from the package.  Today's kernels are imported before any
# old ones: a Cython module registers itself in sys.modules under the name it was compiled as
# (delgrad_core._layer) if that name is free, and today's code would then run the old kernels.
import delgrad_core._kernels  # noqa: F401

__all__ = ["load", "resolve", "BASELINE_REVISION"]

# The revision this branch started from: per-neuron forward walk, per-synapse backward.
BASELINE_REVISION = "88f2207"
_CYTHON_FLAGS = ["-3", "-X", "boundscheck=False", "-X", "wraparound=False", "-X", "cdivision=True",
                 "-X", "initializedcheck=False"]
_C_FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp", "-DNDEBUG"]


def _git_show(repository: Path, revision: str, path: str) -> str:
    return subprocess.run(["git", "-C", str(repository), "show", f"{revision}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def _import_from(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if path.suffix == ".py":
        sys.modules[name] = module   # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def resolve(revision: str, repository: Path | None = None) -> str:
    """The full commit hash `revision` names in `repository` (default: this checkout).

    Raises RuntimeError if git is missing, this is no git checkout or no commit has that name."""
    repository = repository or Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(repository), "rev-parse", "--verify", "--quiet",
                               f"{revision}^{{commit}}"], check=True, capture_output=True, text=True).stdout.strip()
    except OSError as exc:
        raise RuntimeError(f"git is not available: {exc}") from None
    except subprocess.CalledProcessError:
        raise RuntimeError(f"{revision!r} names no commit of the git checkout {repository}") from None


def load(revision: str = BASELINE_REVISION, repository: Path | None = None) -> ModuleType:
    """That revision's `delgrad_core._propagation`, running on kernels compiled from that revision.

    Raises RuntimeError (with the reason) if the revision is unknown, or git, Cython or the C
    compiler is missing or fails.  The scratch directory is removed however the build ends."""
    repository = repository or Path(__file__).resolve().parent.parent
    commit = resolve(revision, repository)
    build = Path(tempfile.mkdtemp(prefix=f"delgrad-{commit[:12]}-"))
    try:
        return _built(build, commit, repository)
    finally:
        shutil.rmtree(build)   # a loaded extension stays mapped after its file is removed


def _built(build: Path, commit: str, repository: Path) -> ModuleType:
    """Build the kernels of `commit` in folder `build` and import them (see `load`)."""
    package = build / "delgrad_core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    try:
        for name in ("_layer.pyx", "_psp.pxd", "_propagation.py"):
            (package / name).write_text(_git_show(repository, commit, f"delgrad_core/{name}"))
        subprocess.run([sys.executable, "-m", "cython", *_CYTHON_FLAGS, "-I", str(build),
                        str(package / "_layer.pyx"), "-o", str(package / "_layer.c")],
                       check=True, capture_output=True, text=True)
        compiler = os.environ.get("CC", sysconfig.get_config_var("CC") or "cc").split()
        extension = package / ("_layer" + sysconfig.get_config_var("EXT_SUFFIX"))
        subprocess.run([*compiler, *_C_FLAGS, f"-I{sysconfig.get_paths()['include']}",
                        str(package / "_layer.c"), "-o", str(extension)],
                       check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise RuntimeError(f"could not build the kernels of {commit[:12]}: {detail.strip()[-500:]}") from None
    # a name of its own: the init symbol is PyInit__layer, and CPython may register the module
    # in sys.modules, where "delgrad_core._layer" must stay today's kernels
    kernels = _import_from(extension, f"delgrad_{commit}._layer")
    try:
        propagation = _import_from(package / "_propagation.py", f"delgrad_{commit}._propagation")
    except ImportError as exc:  # (a later revision's _propagation.py imports modules built with the package)
        raise RuntimeError(f"the _propagation.py of {commit[:12]} cannot run on its kernels alone ({exc}); revisions "
                           f"laid out as {BASELINE_REVISION} can") from None
    propagation._layer = kernels   # the old module's functions look up `_layer` at call time
    return propagation
