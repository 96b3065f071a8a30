"""
setup.cfg lists every package under ppypi/: a non-editable install (pip
install .) ships only what it lists, and a missing backend package would
break a deployed server while the editable test install never notices.
"""

import configparser
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_is_listed():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    listed = {p.strip() for p in parser["options"]["packages"].split() if p.strip()}
    found = set()
    for folder, dirs, files in os.walk(os.path.join(ROOT, "ppypi")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert found - listed == set(), "not listed in setup.cfg's packages"
