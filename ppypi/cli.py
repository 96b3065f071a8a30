"""
The C{ppypi} command: helpers for administrators.

    ppypi passwd USER      print "USER:HASH" (bcrypt) for htpasswd or the config
"""

import argparse
import getpass
import json
import sys

import bcrypt

from .config import _USER_NAME

BCRYPT_COST = 12


def _read_password(stdin, prompt):
    """From a prompt on a terminal (asked twice), else the first line of stdin."""
    if stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
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
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
