"""
The home page's upload lines, run as a person would paste them into a
shell on the server: real twine and uv against a live zero-configuration
daemon, without a prompt (a tool that asked would fail here).
"""

import html
import os
import re
import subprocess

import pytest

from .conftest import BIN, client_env, get, make_corpus


def shown(body, command):
    m = re.search(f"<pre[^>]*>({command} .*?)</pre>".encode(), body)
    assert m, f"no {command} line on the home page"
    return html.unescape(m.group(1).decode())


@pytest.mark.parametrize("command, prefix", [("twine upload", "Twine"), ("uv publish", "Uv")])
def test_the_home_pages_upload_line_uploads(tmp_path, daemon_factory, command, prefix):
    daemon = daemon_factory(tmp_path / "root", "--extra-index-url", "")
    status, _, body = get(daemon.url)
    assert status == 200
    line = shown(body, command)
    token = (tmp_path / "root" / ".ppypi" / "upload-token").read_text().strip()
    assert token not in line and token.encode() not in body

    work = tmp_path / "work"
    make_corpus(work / "dist", projects=1, versions=1, prefix=prefix)
    env = client_env(PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
                     TWINE_NON_INTERACTIVE="1", UV_NO_PROGRESS="1")
    result = subprocess.run(["bash", "-c", line], cwd=work, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"

    project = f"{prefix.lower()}-pkg-00000"
    status, _, page = get(daemon.url + f"simple/{project}/")
    assert status == 200
    assert all(f.name.encode() in page for f in (work / "dist").iterdir())
    assert token not in daemon.log()
