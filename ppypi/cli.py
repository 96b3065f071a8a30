"""
The C{ppypi} command: helpers for administrators.

    ppypi passwd USER      print "USER:HASH" (bcrypt) for htpasswd or the config
    ppypi yank URL NAME VERSION [--reason R] [--undo] [-u USER]
                           yank (or unyank) a release on a running server
    ppypi github init|reindex --root ROOT --config FILE [--admin-secret FILE] [REPO]
                           set up a GitHub repository, or rebuild its index
    ppypi copy --root ROOT --config FILE [--admin-secret FILE] [--dry-run] SOURCE DEST
                           copy every file, yank and name held of one repository
                           into another (resumable: a run copies what is missing)
    ppypi token create|list|revoke REPO [ID] --root ROOT --config FILE [--project P ...]
                           upload tokens scoped to a repository's projects
"""

import argparse
import base64
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import bcrypt

from .backends.interface import STATUSES
from .commands import copy, github, token
from .config import _USER_NAME

BCRYPT_COST = 12


def _read_password(stdin, prompt, confirm=True):
    """From a prompt on a terminal (asked twice), else the first line of stdin."""
    if stdin.isatty():
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != first:
            raise SystemExit("ppypi passwd: the passwords differ")
        return first
    line = stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def passwd(args, stdin=None, stdout=None):
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if not _USER_NAME.fullmatch(args.user):
        raise SystemExit("ppypi passwd: user names are 1-100 characters, no spaces or colons")
    password = _read_password(stdin, f"password for {args.user}: ")
    if not password:
        raise SystemExit("ppypi passwd: empty password")
    if len(password.encode("utf-8")) > 72:
        raise SystemExit("ppypi passwd: bcrypt uses at most 72 bytes of a password; "
                         "choose a shorter one")
    hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(args.cost)).decode()
    if args.yaml:
        # JSON strings are YAML double-quoted scalars: any user name reads back.
        stdout.write(f"{json.dumps(args.user)}: {{password: {json.dumps(hashed)}}}\n")
    else:
        stdout.write(f"{args.user}:{hashed}\n")


def _call(command, args, path, method, form, stdin):
    """
    One request of an administration command to a running server, with the
    user's credentials: its JSON answer, or SystemExit saying what failed.
    """
    base = args.url if args.url.endswith("/") else args.url + "/"
    if not base.startswith(("http://", "https://")):
        raise SystemExit(f"ppypi {command}: the URL must be http(s)://HOST[:PORT]/[REPOSITORY/]")
    url = base + "/".join(urllib.parse.quote(p, safe="") for p in path)
    headers = {}
    if args.user:
        password = os.environ.get("PPYPI_PASSWORD")
        if password is None:
            password = _read_password(stdin, f"password for {args.user}: ", confirm=False)
        token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
        headers["Authorization"] = "Basic " + token
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"ppypi {command}: {url}: {e.code} {e.reason}"
                         + _refusal(command, e.code, args.user)) from None
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"ppypi {command}: {url}: {getattr(e, 'reason', e)}") from None


def yank(args, stdin=None, stdout=None):
    """Yank or unyank a release through the server's /yank/ endpoint."""
    stdout = stdout or sys.stdout
    path = ("yank", args.name, args.version)
    if args.undo:
        answer = _call("yank", args, path, "DELETE", None, stdin or sys.stdin)
    else:
        answer = _call("yank", args, path, "POST", {"reason": args.reason}, stdin or sys.stdin)
    what = "yanked" if answer["yanked"] else "unyanked"
    stdout.write(f"{what} {answer['project']} {answer['version']}: "
                 f"{', '.join(answer['files'])}\n")


def status(args, stdin=None, stdout=None):
    """Set a project's status (PEP 792) through the server's /status/ endpoint."""
    stdout = stdout or sys.stdout
    answer = _call("status", args, ("status", args.name), "POST",
                   {"status": args.status, "reason": args.reason}, stdin or sys.stdin)
    reason = f" ({answer['reason']})" if answer.get("reason") else ""
    stdout.write(f"{answer['project']} is {answer['status']}{reason}\n")


def _refusal(command, code, user):
    """What a 401 or 403 means for the one asking: the server's own reason
    names no option of this command."""
    what = {"yank": "yank", "status": "set a status"}[command]
    if code == 401 and not user:
        return (f"; this server needs credentials to {what}: give -u USER (on the "
                "zero-configuration default: -u __token__ with the token in "
                "ROOT/.ppypi/upload-token) and the password in PPYPI_PASSWORD or on stdin")
    if code == 401:
        return (f"; the server refused the credentials of {user}: check -u and the "
                "password (PPYPI_PASSWORD or stdin)")
    if code == 403:
        return (f"; {user} may not {what} here: that needs write permission on this "
                "repository (and a token's scope must include the project)")
    return ""


def _server_options(parser):
    """A running server's repository, a project of it, and who asks (yank, status)."""
    parser.add_argument("url", help="the repository's URL: http://HOST:8888/ or "
                                    "http://HOST:8888/R/")
    parser.add_argument("name")
    parser.add_argument("-u", "--user", help="a user with write permission")


def _store_options(parser):
    """The daemon's own configuration, for the commands that work on a store."""
    parser.add_argument("--root", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--admin-secret", "--admin_secret", dest="admin_secret")
    parser.add_argument("--config-or-admin-secret-can-be-text",
                        "--config_or_admin_secret_can_be_text", action="store_true",
                        dest="config_or_admin_secret_can_be_text")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ppypi", description="ppypi administration")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "passwd", help="print a bcrypt password line for htpasswd or the config",
        description="Reads the password from the terminal (or the first line of "
                    "stdin), never from the command line.")
    p.add_argument("user")
    p.add_argument("--yaml", action="store_true",
                   help="print a line for the users: section of the YAML config")
    p.add_argument("--cost", type=int, default=BCRYPT_COST, choices=range(12, 18),
                   metavar="12-17", help="bcrypt cost (default 12)")
    p.set_defaults(func=passwd)
    y = commands.add_parser(
        "yank", help="yank (or unyank) a release on a running ppypi",
        description="PEP 592: pip and uv skip a yanked release unless it is pinned "
                    "with ==. The password comes from PPYPI_PASSWORD, the terminal or stdin.")
    _server_options(y)
    y.add_argument("version")
    y.add_argument("--reason", default="", help="shown by installers that skip it")
    y.add_argument("--undo", action="store_true", help="unyank")
    y.set_defaults(func=yank)
    st = commands.add_parser(
        "status", help="set a project's status (archived, deprecated, quarantined, active)",
        description="PEP 792: archived and quarantined projects take no uploads; a "
                    "quarantined one's files are not offered; uv reports the status. "
                    "The password comes from PPYPI_PASSWORD, the terminal or stdin.")
    _server_options(st)
    st.add_argument("status", choices=STATUSES)
    st.add_argument("--reason", default="", help="shown to installers and people")
    st.set_defaults(func=status)
    g = commands.add_parser(
        "github", help="set up a GitHub repository, or rebuild its index from its releases",
        description="init: create the branch and layout in the repository (idempotent). "
                    "reindex: rebuild index/PROJECT.json from the releases' assets, "
                    "downloading each file once to hash it.")
    g.add_argument("action", choices=["init", "reindex"])
    g.add_argument("repository", nargs="?", help="needed when several are configured")
    _store_options(g)
    g.set_defaults(func=github)
    c = commands.add_parser(
        "copy", help="copy every file, yank, status and name held of one repository into another",
        description="Any kind of repository into any other (a folder into S3...). A file "
                    "already in DEST with the same sha256 is skipped, so a run after an "
                    "interruption copies only what is missing. A file of the same name with "
                    "other content in DEST is reported, never overwritten. Exits 0 only "
                    "when everything is in DEST.")
    c.add_argument("source", help="a repository of the configuration")
    c.add_argument("dest", help="a repository of the configuration")
    _store_options(c)
    c.add_argument("--dry-run", "--dry_run", action="store_true", dest="dry_run",
                   help="list what would be copied; change nothing")
    c.set_defaults(func=copy)
    t = commands.add_parser(
        "token", help="upload tokens scoped to a repository and projects",
        description="create: print a new token once (use it as __token__ with twine, uv "
                    "publish, pip's keyring); list: the tokens without their values; "
                    "revoke: end one. Running servers see a change within one sync_interval.")
    t.add_argument("action", choices=["create", "list", "revoke"])
    t.add_argument("repository", help="a repository of the configuration")
    t.add_argument("token_id", nargs="?", help="revoke: the token's id (from list)")
    t.add_argument("--project", action="append", dest="projects", default=[],
                   help="create: a project the token may change (repeatable)")
    t.add_argument("--all-projects", action="store_true", dest="all_projects",
                   help="create: every project of the repository")
    t.add_argument("--expires", help="create: lifetime such as 90d, 12h (default: 90d; "
                                     "'never' for none)", default="90d")
    t.add_argument("--description", default="")
    _store_options(t)
    t.set_defaults(func=token)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
