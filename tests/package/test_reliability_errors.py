"""The one-line error handler every entry point runs in: a user mistake is one line on stderr and exit code 2; with
--debug / MAGNET_DEBUG=1 the full traceback; a bug is never disguised as a user mistake."""

import os

import pytest

from magnet_lightning.errors import DEBUG_ENV, UserError, UserExit, pop_debug_flag, user_errors


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "0")  # restored after each test, whatever pop_debug_flag sets


@pytest.mark.parametrize("error", [UserError("model.model.dimm: unknown field\n  (did you mean 'dim'?)"),
                                   FileNotFoundError("shards/x.tar not found\nDownload it")])
def test_user_mistake_is_one_line_and_exit_code_2(error, capsys):
    with pytest.raises(SystemExit) as exit_info, user_errors():
        raise error
    assert exit_info.value.code == 2 and isinstance(exit_info.value, UserExit)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert " ".join(str(error).split()) in err


def test_extra_types_are_user_mistakes_too(capsys):
    class CheckpointProblem(ValueError):
        pass

    with pytest.raises(SystemExit, match="bad file"), user_errors(CheckpointProblem):
        raise CheckpointProblem("bad file")
    assert capsys.readouterr().err == "error: bad file\n"


def test_bugs_keep_their_traceback(capsys):
    with pytest.raises(KeyError), user_errors():
        raise KeyError("a bug")
    assert capsys.readouterr().err == ""


def test_debug_flag_shows_the_traceback(capsys):
    args = pop_debug_flag(["--text", "x", "--debug"])
    assert args == ["--text", "x"] and os.environ[DEBUG_ENV] == "1"
    with pytest.raises(UserError, match="wrong"), user_errors():
        raise UserError("wrong")
    assert capsys.readouterr().err == ""
