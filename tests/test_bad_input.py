"""Bad input ends with one `reverie: error:` line naming the problem and the fix, and never
writes into an existing logdir (nor creates a new one)."""

import io
import shutil
from pathlib import Path

import pytest
import torch

from reverie import checkpoint
from reverie.cli import main
from reverie.files import strip_footer, with_footer

from .conftest import TINY

FAST = [*TINY, "run.train_ratio=64", "replay.chunk=64"]
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run (two checkpoints, replay chunks) to copy into each case."""
    logdir = tmp_path_factory.mktemp("bad_input") / "run"
    assert main(["train", "--logdir", str(logdir), "--steps", "20", *FAST]) == 0
    assert main(["train", "--logdir", str(logdir), "--steps", "30", *FAST]) == 0
    return logdir


def snapshot(logdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(logdir)): p.read_bytes() for p in logdir.rglob("*") if p.is_file()}


def one_error_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("reverie: error: "), err
    return lines[0]


def train(logdir: Path, *extra: str) -> list[str]:
    return ["train", "--logdir", str(logdir), "--steps", "40", *FAST, *extra]


def test_unknown_env_id(tmp_path, capsys):
    line = one_error_line(capsys, train(tmp_path / "new", "--env", "gym:CartPol-v1"))
    assert "CartPol-v1" in line and "did you mean gym:CartPole-v1" in line
    assert not (tmp_path / "new").exists()


def test_unknown_config_key(tmp_path, trained, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(trained, logdir)
    before = snapshot(logdir)
    line = one_error_line(capsys, train(logdir, "run.batch_sise=3"))
    assert "unknown config key 'run.batch_sise'" in line and "run.batch_size" in line
    assert snapshot(logdir) == before
    line = one_error_line(capsys, train(tmp_path / "new", "replay.capacty=10"))
    assert "replay.capacity" in line and not (tmp_path / "new").exists()


def test_wrong_value_type(tmp_path, trained, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(trained, logdir)
    before = snapshot(logdir)
    line = one_error_line(capsys, train(logdir, "run.batch_size=abc"))
    assert "bad value for 'run.batch_size'" in line and "'abc'" in line
    assert snapshot(logdir) == before
    line = one_error_line(capsys, train(tmp_path / "new", "run.batch_size=-3"))
    assert "run.batch_size" in line and "> 0" in line and not (tmp_path / "new").exists()


def test_unsupported_observation_space(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    line = one_error_line(
        capsys, train(tmp_path / "new", "--env", "gym:fake_envs:fake_envs/Text-v0")
    )
    assert "observation space Text" in line and "not supported" in line and "Wrap" in line
    assert not (tmp_path / "new").exists()


def test_logdir_of_incompatible_config(tmp_path, trained, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(trained, logdir)
    before = snapshot(logdir)
    line = one_error_line(capsys, train(logdir, "--size", "12m"))
    assert "size 1m, not 12m" in line and "new --logdir" in line
    line = one_error_line(capsys, train(logdir, "model.deter=64"))
    assert "model.deter=32" in line and "new --logdir" in line
    line = one_error_line(capsys, train(logdir, "--env", "gym:Pendulum-v1"))
    assert "env.id" in line
    assert snapshot(logdir) == before


def test_checkpoint_from_another_version(tmp_path, trained, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(trained, logdir)
    for name in (checkpoint.CHECKPOINT, checkpoint.PREVIOUS):  # both: no silent fallback
        path = logdir / name
        state = torch.load(io.BytesIO(strip_footer(path.read_bytes(), path)), weights_only=False)
        state["format"] = checkpoint.FORMAT_VERSION + 1
        buf = io.BytesIO()
        torch.save(state, buf)
        path.write_bytes(with_footer(buf.getvalue()))
        if name == checkpoint.CHECKPOINT:
            # the newest from another version, the previous one ours: still refused, since
            # resuming from the older one would overwrite the newer one later
            before = snapshot(logdir)
            line = one_error_line(capsys, train(logdir))
            assert f"format {checkpoint.FORMAT_VERSION + 1}" in line and "new logdir" in line
            assert snapshot(logdir) == before
    before = snapshot(logdir)
    for argv in (train(logdir), ["eval", "--logdir", str(logdir)]):
        line = one_error_line(capsys, argv)
        assert "checkpoint format" in line and "reverie version that wrote it" in line
    assert snapshot(logdir) == before


@pytest.mark.parametrize(
    "text",
    [b"model: [unclosed\n  x: : :\n", b"\xff\xfe\x00garbage", b"model:\n  deter: abc\n"],
    ids=["yaml", "bytes", "value"],
)
def test_corrupt_config_yaml(tmp_path, trained, capsys, text):
    logdir = tmp_path / "run"
    shutil.copytree(trained, logdir)
    (logdir / "config.yaml").write_bytes(text)
    before = snapshot(logdir)
    line = one_error_line(capsys, train(logdir))
    assert f"{logdir / 'config.yaml'} is corrupt" in line and "new --logdir" in line
    assert snapshot(logdir) == before
