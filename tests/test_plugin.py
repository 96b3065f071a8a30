"""twistd finds the ppypi plugin however ppypi is installed."""

import os
import subprocess
import sys
import zipfile

from .conftest import BIN, PROJECT


def twistd_help(cwd, env=None):
    result = subprocess.run([os.path.join(BIN, "twistd"), "--help"], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=60)
    return result.stdout


def test_found_from_editable_install(tmp_path):
    # The test environment is `pip install -e .`; run from elsewhere.
    assert "ppypi            A private Python package index." in twistd_help(tmp_path)


def test_found_from_the_checkout(tmp_path):
    env = dict(os.environ, PYTHONPATH=PROJECT)
    assert "ppypi" in twistd_help(PROJECT, env)


def test_wheel_ships_the_plugin_and_twistd_finds_it(tmp_path):
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir",
                    str(out), PROJECT], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/ppypi_plugin.py" in names
    # Shipping these would shadow Twisted's own package.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not any(n.startswith("tests/") for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    # A Python whose path has the installed copy, not the checkout.
    code = ("import sys; sys.path = [p for p in sys.path if p.rstrip('/') != %r];"
            "sys.path.insert(0, %r);"
            "from twisted.plugin import getPlugins; from twisted.application.service import IServiceMaker;"
            "import ppypi; print(ppypi.__file__);"
            "print([p.tapname for p in getPlugins(IServiceMaker)])") % (PROJECT, str(target))
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    path, plugins = result.stdout.splitlines()[-2:]
    assert path.startswith(str(target))
    assert "'ppypi'" in plugins


def test_help_names_root_as_a_positional_argument(tmp_path):
    # private-pypi's server was started as `private_pypi_server ROOT ...`.
    result = subprocess.run([os.path.join(BIN, "twistd"), "ppypi", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "Usage: twistd [options] ppypi [--root] ROOT [options]" in result.stdout
