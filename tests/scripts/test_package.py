"""`pip install .` gives the ascendcv and ascendvsr packages, the pinned runtime dependencies and
an `ascendvsr` command equal to tools/main.py (checked on a wheel built offline)."""
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wheel_has_the_packages_the_pins_and_the_command(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('pyproject.toml', 'README.md', 'requirements.txt'):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for pkg in ('ascendcv', 'ascendvsr'):
        shutil.copytree(os.path.join(ROOT, pkg), src / pkg,
                        ignore=shutil.ignore_patterns('__pycache__'))
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp_path / 'dist'), str(src)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = (tmp_path / 'dist').glob('ascendvsr-*.whl')
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith('METADATA'))).decode()
        entry = z.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert 'ascendvsr/cli.py' in names and 'ascendcv/runner/trainer.py' in names
    assert 'ascendvsr/zoo/edvr.py' in names  # registrations are discovered from the package
    pins = [l.split('#')[0].strip() for l in open(os.path.join(ROOT, 'requirements.txt'))]
    for pin in filter(None, pins):
        assert f'Requires-Dist: {pin}' in meta, pin
    assert 'ascendvsr = ascendvsr.cli:run_cli' in entry


def test_the_command_takes_the_mode_first(capsys):
    from ascendvsr.cli import main
    assert main(['eval', 'model.name', 'EDSR']) == 2  # = tools/main.py --mode eval ...
    assert "model.name='EDSR' is not a registered model" in capsys.readouterr().err
