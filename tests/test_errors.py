"""The errors meant for the user derive from reverie.errors.ReverieError, and the CLI prints
those (and only those) as one `reverie: error:` line: anything else is a bug and keeps its
traceback, a FileNotFoundError included."""

import importlib
import inspect
import pkgutil
import signal
import sys

import pytest

import reverie
from reverie import cli
from reverie.errors import MissingExtraError, ReverieError

from .conftest import TINY
from .test_bad_input import one_error_line

# the builtin base each class had before ReverieError: `except ValueError` still catches it
USER_ERRORS = [
    ("reverie.config.ConfigError", ValueError),
    ("reverie.envs.EnvIdError", ValueError),
    ("reverie.envs._util.SuiteNotInstalledError", ValueError),
    ("reverie.envs.UnsupportedSpaceError", ValueError),
    ("reverie.envs.checks.EnvContractError", RuntimeError),
    ("reverie.envs.custom.CustomEnvError", ValueError),
    ("reverie.envs.vector.EnvWorkerError", RuntimeError),
    ("reverie.checkpoint.CheckpointError", RuntimeError),
    ("reverie.checkpoint.CheckpointVersionError", RuntimeError),
    ("reverie.checkpoint.UnsafeCheckpointError", RuntimeError),
    ("reverie.lock.LogdirInUseError", RuntimeError),
    ("reverie.files.DiskFullError", RuntimeError),
    ("reverie.distributed.RankLostError", RuntimeError),
    ("reverie.cli.UsageError", Exception),
    ("reverie.errors.NoCheckpointError", FileNotFoundError),
    ("reverie.errors.MissingExtraError", ImportError),
    ("reverie.viz.plot.NoRunsError", FileNotFoundError),
    ("reverie.trainer.NonFiniteError", RuntimeError),
]
# `*Error` classes that never reach the user as they are: each caller turns them into one
# that does (CorruptFileError: checkpoint.load_file raises CheckpointError, replay skips
# the chunk)
INTERNAL = {"reverie.files.CorruptFileError"}


def resolve(dotted: str) -> type:
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def all_modules() -> list:
    """Every module of the package, imported: a ReverieError subclass is only found (as a
    subclass) once the module that defines it has run."""
    names = [m.name for m in pkgutil.walk_packages(reverie.__path__, "reverie.")]
    return [importlib.import_module(name) for name in names]


def subclasses(cls: type) -> set[type]:
    return {s for c in cls.__subclasses__() for s in {c, *subclasses(c)}}


@pytest.mark.parametrize("dotted, builtin", USER_ERRORS)
def test_user_errors_derive_from_reverie_error_and_keep_their_builtin_base(dotted, builtin):
    cls = resolve(dotted)
    assert issubclass(cls, ReverieError) and issubclass(cls, builtin)


def test_every_error_class_of_the_package_is_for_the_user_or_internal():
    found = {
        f"{cls.__module__}.{name}"
        for module in all_modules()
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if name.endswith("Error")
        and cls.__module__ == module.__name__
        and not issubclass(cls, ReverieError)
    }
    assert found <= INTERNAL, "derive these from ReverieError, or list them as INTERNAL"


def test_main_prints_every_reverie_error_as_one_line(monkeypatch, capsys):
    all_modules()
    from reverie.distributed import RankLostError

    ours = {k for k in subclasses(ReverieError) if k.__module__.startswith("reverie.")}
    kinds = ours - {RankLostError}  # left to __main__.run: the next test
    assert resolve("reverie.viz.plot.NoRunsError") in kinds
    for kind in [ReverieError, *sorted(kinds, key=lambda k: k.__qualname__)]:

        def fail(args, kind=kind):
            raise kind("what is wrong\nand how to fix it")

        monkeypatch.setattr(cli, "cmd_sizes", fail)
        line = one_error_line(capsys, ["sizes"])
        assert line == "reverie: error: what is wrong and how to fix it", kind


def test_a_lost_rank_is_one_line_from_the_module_entry_point(monkeypatch, capsys):
    """main leaves RankLostError to `python -m reverie` (torchrun's), which prints it and then
    ignores the SIGTERM torchrun sends every rank."""
    import reverie.__main__ as entry
    from reverie.distributed import RankLostError

    def fail(args):
        raise RankLostError("rank 1 ended")

    handlers = []
    monkeypatch.setattr(cli, "cmd_sizes", fail)
    monkeypatch.setattr(sys, "argv", ["reverie", "sizes"])
    monkeypatch.setattr(signal, "signal", lambda *a: handlers.append(a))
    with pytest.raises(RankLostError):
        cli.main(["sizes"])
    assert entry.run() == 1
    assert capsys.readouterr().err == "reverie: error: rank 1 ended\n"
    assert handlers == [(signal.SIGTERM, signal.SIG_IGN)]


@pytest.mark.parametrize("bug", [FileNotFoundError, ValueError, RuntimeError, ImportError])
def test_main_keeps_the_traceback_of_any_other_exception(monkeypatch, capsys, bug):
    def fail(args):
        raise bug("a bug, not the user's input")

    monkeypatch.setattr(cli, "cmd_sizes", fail)
    with pytest.raises(bug, match="a bug"):
        cli.main(["sizes"])
    assert "reverie: error" not in capsys.readouterr().err


def test_a_bad_config_key(capsys):
    line = one_error_line(capsys, ["config", "run.nope=1"])
    assert "unknown config key 'run.nope'" in line


@pytest.mark.parametrize("command", ["eval", "dream", "export"])
def test_a_logdir_without_a_checkpoint(tmp_path, capsys, command):
    logdir = tmp_path / "empty"
    logdir.mkdir()
    out = ["--format", "safetensors", "--out", str(tmp_path / "w.safetensors")]
    argv = [command, "--logdir", str(logdir), *(out if command == "export" else [])]
    line = one_error_line(capsys, argv)
    assert f"no checkpoint in {logdir}" in line
    assert f"train there first (reverie train --logdir {logdir})" in line
    assert list(logdir.iterdir()) == []


def test_wandb_not_installed(tmp_path, capsys, monkeypatch):
    """logger.wandb=true without the package: the sink (opened with the run's logs, before
    its first env step) names the extra, and the CLI prints that as one line."""
    from reverie.wandb_sink import WandbSink

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[wandb\]'"):
        WandbSink(tmp_path, "project", "", {})
    # the sink as a command opens it: no agent, no env, whatever the trainer looks like
    monkeypatch.setattr(cli, "cmd_sizes", lambda args: WandbSink(tmp_path, "project", "", {}))
    line = one_error_line(capsys, ["sizes"])
    assert "logger.wandb=true needs the wandb package: pip install -e '.[wandb]'" in line
    assert "logger.wandb=false" in line
    assert not (tmp_path / "wandb_id").exists()


def test_train_with_wandb_not_installed(tmp_path, capsys, monkeypatch):
    """The same through `reverie train`, which opens the sink before its first env step."""
    monkeypatch.setitem(sys.modules, "wandb", None)
    argv = ["train", "--logdir", str(tmp_path), "--steps", "8", *TINY, "logger.wandb=true"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("reverie: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "pip install -e '.[wandb]'" in errors[0]
