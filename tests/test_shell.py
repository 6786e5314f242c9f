"""Commands the package prints work as printed in a new shell, without the virtual environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import in_new_shell

from mnist_keras import shell

CHECKOUT = Path(__file__).parents[1]


@pytest.fixture(params=["the checkout", "another folder"])
def cwd(request, tmp_path, monkeypatch) -> Path:
    """Where the program ran, and where its printed command is pasted."""
    folder = CHECKOUT if request.param == "the checkout" else tmp_path
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.slow
def test_a_printed_python_command_runs_in_a_new_shell(cwd):
    result = in_new_shell(shell.python_module("mnist_keras.train", "--help"), cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--resume RUN_DIR" in result.stdout


@pytest.mark.slow
def test_the_printed_tensorboard_command_runs_in_a_new_shell(cwd, tmp_path):
    result = in_new_shell(f"{shell.tensorboard(tmp_path / 'logs')} --version_tb", cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()[0].isdigit()  # the version


def test_paths_with_spaces_are_quoted():
    assert shell.python_module("m", Path("a b")).endswith("-m m 'a b'")
