"""The CLI starts fast and lists the losses without importing torch."""

import subprocess
import sys


def test_losses_command_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from segbalance.cli import app\n"
        "r = CliRunner().invoke(app, ['losses'])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert 'topk_dice' in r.output and 'balanced' in r.output\n"
        "print('torch' in sys.modules, 'monai' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "segbalance", "--help"], capture_output=True, text=True, check=True
    )
    assert "losses" in out.stdout
