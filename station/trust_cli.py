"""The key holder's commands (SECURITY.md): `station pin` (first setup, status, reset) and `station trust-recipe`
(accept a recipe made on another station or before seals existed). Both write the audit log first.

PINs are read with getpass, or, with --pin-stdin, one per line from standard input (scripts, tests);
never from the command line, where other users could read them in the process list.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from station.core.errors import StationError


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _read_pin(args, prompt: str) -> str:
    if args.pin_stdin:
        line = sys.stdin.readline()
        if not line:
            raise StationError("expected a PIN on standard input")
        return line.rstrip("\r\n")
    return getpass.getpass(prompt)


def _new_pin(args) -> str:
    pin = _read_pin(args, "new engineer PIN (4 to 12 digits): ")
    if _read_pin(args, "the same PIN again: ") != pin:
        raise StationError("the two PINs differ; nothing was changed")
    return pin


def _workbench(args):
    from station.core.workbench import AuditLog, PinStore, default_root

    root = Path(args.workbench) if args.workbench else default_root()
    audit = AuditLog(root / "audit.jsonl")
    return root, audit, PinStore(root / "engineer_pin.json", audit=audit)


def cmd_pin(args) -> int:
    from station.core.workbench.roles import Session, reset_pin

    root, audit, store = _workbench(args)
    check = audit.verify()
    if check.unrecorded:
        audit.ensure_recorded(check)
    if args.reset:
        reset_pin(store, _new_pin(args), args.user, reason=args.reason or "")
        _emit({"pin": "reset", "file": str(store.path), "audit": check.problem or "intact"})
    elif args.set:
        Session(store, audit=audit).set_pin(_new_pin(args), args.user)
        _emit({"pin": "set", "file": str(store.path), "audit": check.problem or "intact"})
    else:
        state = "locked" if store.problem else "set" if store.has_pin else "not set"
        _emit({"pin": state, "problem": store.problem, "file": str(store.path), "audit": check.problem or "intact",
               "audit_entries": check.entries})
    return 0


def cmd_trust_recipe(args) -> int:
    from station.core.recipe import Recipe, authenticity_problem, seal_recipe
    from station.core.workbench.errors import AccessError
    from station.core.workbench.roles import Session, os_user

    _, audit, store = _workbench(args)
    if store.problem:
        raise AccessError(store.problem)
    actor = {"role": "key-holder", "user": os_user()}
    if store.has_pin:  # beside the key, the engineer PIN: a recipe is trusted by an engineer
        session = Session(store, audit=audit)
        session.unlock(_read_pin(args, "engineer PIN: "))
        actor = session.actor
    recipe = Recipe._load(Path(args.recipe))
    was = authenticity_problem(recipe.path, recipe.content_hash)
    audit.record(actor, "trust_recipe", f"recipe {recipe.path}", was or "already trusted",
                 {"content_hash": recipe.content_hash, "thresholds": list(recipe.thresholds)},
                 reason=args.reason or "")
    recipe = seal_recipe(recipe.path)
    _emit({"recipe": str(recipe.path), "content_hash": recipe.content_hash, "sealed": True,
           "thresholds": {"review": recipe.thresholds[0], "ng": recipe.thresholds[1]}})
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `pin` and `trust-recipe` to the `station` command's subparsers."""
    p = sub.add_parser("pin", help="the engineer PIN: status (default), first setup, or the key holder's reset")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--set", action="store_true", help="set the first PIN (only on a station with no PIN history)")
    what.add_argument("--reset", action="store_true",
                      help="replace a lost, damaged or forgotten PIN (the key holder's act; audited)")
    p.add_argument("--user", default="engineer", help="the name the audit log records for the engineer")
    p.add_argument("--reason", help="why (goes into the audit log)")
    p.add_argument("--workbench", help="the workbench folder (default: $STATION_WORKBENCH_DIR or the config's)")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN(s) from standard input, one per line")
    p.set_defaults(func=cmd_pin)

    t = sub.add_parser("trust-recipe", help="accept a recipe made elsewhere: validate it and seal it with this "
                                            "station's key (needs the engineer PIN once one is set; audited)")
    t.add_argument("recipe", help="recipe folder")
    t.add_argument("--reason", help="why (goes into the audit log)")
    t.add_argument("--workbench", help="the workbench folder (default: $STATION_WORKBENCH_DIR or the config's)")
    t.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    t.set_defaults(func=cmd_trust_recipe)
