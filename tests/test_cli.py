import subprocess
import sys

import pytest

from latent_evo import cli


def test_help_lists_every_subcommand(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in ("zoo", "pretrain", "evolve", "hub", "demo", "bench"):
        assert name in out


def test_unknown_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_import_stays_light():
    # `import latent_evo` must not pull in Lightning or datasets (seconds of import time).
    code = "import sys, latent_evo, latent_evo.cli; print('lightning' in sys.modules, 'datasets' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
