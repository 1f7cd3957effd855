"""The split of `compress/commands.py` and `compress/lowrank.py` (issue 19): every name keeps
its old import path, the command module stays torch-free, each module stays under ~400 lines."""

import subprocess
import sys
from pathlib import Path

import inkpack.compress as pkg
from inkpack.compress import commands, factored, layout, lowrank, measure, recipe, retrain

# name -> the module that now defines it (the old modules re-export it)
MOVED = {
    commands: {recipe: ["RECIPES", "compress", "model_files", "out_stem", "parse_bits", "parse_recipe",
                        "store_half"],
               retrain: ["Task", "drop_weights", "lr_factor", "retrain", "share_weights"],
               measure: ["_accuracy", "_example", "plot_report", "report"]},
    lowrank: {factored: ["LowRankLSTM", "LowRankLinear", "factorize"], layout: ["rebuild", "structure"]},
}


def test_old_import_paths_give_the_moved_objects():
    for old, homes in MOVED.items():
        for home, names in homes.items():
            for name in names:
                assert getattr(old, name) is getattr(home, name), f"{old.__name__}.{name}"
                obj = getattr(home, name)
                assert not callable(obj) or obj.__module__ == home.__name__, f"{home.__name__}.{name}"
    # one model-file reader (issue 19): compressed files load through models.io, not a command module
    from inkpack.models import io

    assert io.load_compressed.__module__ == "inkpack.models.io"
    assert not hasattr(commands, "load_compressed") and not hasattr(commands, "load_any")
    assert "CRITERIA" in commands.__all__  # the parsers and cmd_* are the command line's (inkpack.cli.compress)
    from inkpack.cli import compress as cli_compress

    assert all(callable(getattr(cli_compress, n)) for n in ("add_parsers", "cmd_compress", "cmd_report"))
    assert not hasattr(commands, "add_parsers") and not hasattr(commands, "cmd_report")
    for name in commands.__all__ + lowrank.__all__:
        assert hasattr(commands if name in commands.__all__ else lowrank, name), name


def test_command_module_imports_no_torch():
    code = ("import sys, inkpack.compress.commands, inkpack.compress.recipe, inkpack.compress.measure, "
            "inkpack.compress.retrain, inkpack.compress.structure, inkpack.cli.compress; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compress_modules_stay_under_400_lines():
    for path in Path(pkg.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, path.name
