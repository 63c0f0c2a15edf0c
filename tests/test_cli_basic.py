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


def test_bad_dataset_path_is_one_line_exit_2(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "segbalance", "analyze", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0]


def test_typer_exit_code_is_propagated(monkeypatch) -> None:
    import typer

    import segbalance.cli as cli

    @cli.app.command("exit-three", hidden=True)
    def _exit_three() -> None:
        raise typer.Exit(3)

    monkeypatch.setattr(sys, "argv", ["segbalance", "exit-three"])
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code == 3
    else:
        raise AssertionError("main() did not exit with the command's code")
    finally:
        cli.app.registered_commands.pop()
