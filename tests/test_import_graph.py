"""The layers of ``src/negrec``: no module imports from a layer above its own.

Every module of the package is parsed (``ast``, nothing is imported) and each of its
``negrec`` imports is checked against the layer table below, including imports inside
functions (a lazy ``from negrec.train import ...`` inside a model is still an upward
dependency) and ``if TYPE_CHECKING:`` blocks. The layers, lowest first, are described in
docs/architecture.md#layers:

0. foundation: errors, atomic writes, argument types, typed configs, the plugin registry,
   the process group;
1. kernels: the numba / torch performance kernels that the components call;
2. data: interactions, loaders, datasets, splits, batches, and the ``data`` commands;
3. components: models, samplers, losses, metrics, the evaluator, the theory (and its
   ``theory`` command), the hardness analysis;
4. train: the training loop, its callbacks (the bound monitor) and the fused fast path;
5. experiment: configs, runner, run directories, reports, sweeps, the ``hardness`` command;
6. cli: the ``negrec`` command, ``python -m negrec`` and the package's public facade.

A module may import its own layer and the layers below. A new module must be given a layer
here (the test fails on an unknown module), so that a new upward import cannot slip in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "negrec"

LAYERS = ("foundation", "kernels", "data", "components", "train", "experiment", "cli")

# Module name or package prefix (``pkg.*`` = every module inside ``pkg``) -> layer.
# The most specific entry wins.
LAYER_OF = {
    "negrec.errors": "foundation",
    "negrec.atomic": "foundation",
    "negrec.argtypes": "foundation",
    "negrec.config_base": "foundation",
    "negrec.registry": "foundation",
    "negrec.distributed": "foundation",
    "negrec._fast": "foundation",  # the package's __init__ (empty)
    "negrec._fast.kernels": "kernels",
    "negrec._fast.owned": "kernels",  # the fused MF step's row passes, split by owner thread
    "negrec._fast.blocked": "kernels",  # blocks of MF+BPR steps, threads meeting at barriers
    "negrec._fast.gather_dot": "kernels",
    "negrec._fast.optim": "kernels",
    "negrec._fast.topn": "kernels",
    "negrec._fast.softmax": "kernels",
    "negrec.data": "data",
    "negrec.data.*": "data",  # data/cli.py included: it may use nothing above data
    "negrec.models": "components",
    "negrec.models.*": "components",
    "negrec.samplers": "components",
    "negrec.samplers.*": "components",
    "negrec.losses": "components",
    "negrec.losses.*": "components",  # should the losses become a package
    "negrec.metrics": "components",
    "negrec.evaluation": "components",
    "negrec.theory": "components",
    "negrec.theory.*": "components",  # theory/cli.py included: theory only
    "negrec.hardness": "components",
    "negrec.train": "train",
    "negrec.monitor": "train",
    "negrec._fast.fused": "train",  # the fused MF/BPR training step, called by train.fit
    "negrec.experiment": "experiment",
    "negrec.experiment.*": "experiment",
    "negrec.hardness_cli": "experiment",  # rebuilds a run's components through the runner
    "negrec.recommend": "experiment",  # negrec.load reads a run directory
    "negrec.recommend_cli": "experiment",
    "negrec.cli": "cli",
    "negrec.__main__": "cli",
    "negrec": "cli",  # the facade re-exports from every layer, train included
    # conformance tests for plugin authors: a leaf that no module of the package imports
    "negrec.testing": "cli",
    "negrec.testing.*": "cli",
}

# The modules the issue names as lower layers: none of them may import these, ever.
LOWER = (
    "negrec.data.*",
    "negrec.models.*",
    "negrec.samplers.*",
    "negrec.losses",
    "negrec.metrics",
    "negrec.evaluation",
    "negrec._fast.kernels",
    "negrec._fast.owned",
    "negrec._fast.blocked",
    "negrec._fast.gather_dot",
    "negrec._fast.optim",
    "negrec._fast.softmax",
    "negrec.theory.*",
)
FORBIDDEN_FROM_LOWER = ("negrec.train", "negrec.experiment", "negrec.cli")

# Names that `from negrec import NAME` may take from the package root without depending on
# the facade: constants defined in negrec/__init__.py itself, before any import there.
ROOT_CONSTANTS = {"__version__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(module: str) -> str:
    if module in LAYER_OF:
        return LAYER_OF[module]
    parts = module.split(".")
    for i in range(len(parts) - 1, 0, -1):
        key = ".".join(parts[:i]) + ".*"
        if key in LAYER_OF:
            return LAYER_OF[key]
    raise KeyError(module)


def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        base = pattern[:-2]
        return module == base or module.startswith(base + ".")
    return module == pattern or module.startswith(pattern + ".")


def negrec_imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported negrec module) for every import anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _matches(a.name, "negrec")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not _matches(target, "negrec"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from negrec.x import submodule`
                    found.append((node.lineno, sub))
                elif not (target == "negrec" and alias.name in ROOT_CONSTANTS):
                    found.append((node.lineno, target))
    return found


def test_every_module_has_a_layer():
    unknown = []
    for module in MODULES:
        try:
            layer_of(module)
        except KeyError:
            unknown.append(module)
    assert not unknown, f"give these modules a layer in LAYER_OF: {unknown}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for module, path in MODULES.items():
        rank = LAYERS.index(layer_of(module))
        for line, target in negrec_imports(module, path):
            target_layer = layer_of(target) if target in MODULES else "cli"
            if LAYERS.index(target_layer) > rank:
                upward.append(
                    f"{path.relative_to(SRC.parent)}:{line}: {module} ({layer_of(module)}) "
                    f"imports {target} ({target_layer})"
                )
    assert not upward, "upward imports:\n" + "\n".join(upward)


@pytest.mark.parametrize("pattern", LOWER)
def test_lower_layers_never_import_train_experiment_or_cli(pattern):
    modules = [m for m in MODULES if _matches(m, pattern)]
    assert modules, f"no module matches {pattern}"
    bad = [
        f"{MODULES[m].relative_to(SRC.parent)}:{line}: imports {target}"
        for m in modules
        for line, target in negrec_imports(m, MODULES[m])
        if any(_matches(target, f) for f in FORBIDDEN_FROM_LOWER) or target == "negrec"
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_function_local_and_relative_imports(tmp_path):
    pkg = tmp_path / "negrec" / "models"
    pkg.mkdir(parents=True)
    src = pkg / "fake.py"
    src.write_text(
        "def f():\n"
        "    from negrec.train import fit\n"
        "    return fit\n"
        "from .. import experiment\n"
        "from . import base\n"
        "import negrec.cli\n"
    )
    found = negrec_imports("negrec.models.fake", src)
    assert (2, "negrec.train") in found
    assert (4, "negrec.experiment") in found  # a package: `from .. import experiment`
    assert (5, "negrec.models.base") in found
    assert (6, "negrec.cli") in found
    assert layer_of("negrec.models.fake") == "components"
