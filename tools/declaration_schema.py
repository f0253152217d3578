#!/usr/bin/env python3
"""Write data-apple/declarations.json: the declarations Apple's schema defines, for checking.

Apple's device-management schema (https://github.com/apple/device-management) describes each
Declarative Device Management declaration in declarative/declarations/**/*.yaml: its
`declarationtype`, which systems have it (`supportedOS`, from which version), whether several
may apply at once (`apply`: single, multiple, combined) and its payload keys (type, presence,
rangelist, range, subkeys). Lanyard checks every declaration an operator gives a group against
this before storing it (src/protocol/declaration_schema.rs), so an error names the bad key.

Only what the check uses is kept: per type its kind (configuration, asset, activation,
management), `apply`, the iOS and macOS versions that introduced it (null where n/a), and the
key tree. The output is sorted and stable, so regenerating it changes it only when the schema
does. Lanyard embeds it at build time; a test checks it matches the schema whenever the schema
is present.

Usage:
    python3 tools/declaration_schema.py            # rewrite data-apple/declarations.json
    python3 tools/declaration_schema.py --check    # exit 1 if it is out of date
    python3 tools/declaration_schema.py --out -    # print it

The schema is looked for in $LANYARD_APPLE_SCHEMA, else ../shared/apple-device-management
relative to the repository (the directory above tools/), else --schema DIR.
"""

import argparse
import glob
import json
import os
import sys

import yaml

OSES = ("iOS", "macOS")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCHEMA = os.path.join("..", "shared", "apple-device-management")
DEFAULT_OUT = os.path.join("data-apple", "declarations.json")
KINDS = {"activations": "activation", "assets": "asset", "configurations": "configuration", "management": "management"}


def introduced(supported):
    """{OS: version or None} for OSES: None where the schema says n/a or leaves it out."""
    out = {}
    for os_ in OSES:
        entry = supported.get(os_) if isinstance(supported, dict) else None
        version = entry.get("introduced") if isinstance(entry, dict) else None
        out[os_] = None if version in (None, "n/a") else str(version)
    return out


def keys(items):
    """The payload keys as the check reads them."""
    out = []
    for k in items or []:
        entry = {"key": k["key"], "type": k.get("type", "<any>").strip("<>")}
        if k.get("presence") == "required":
            entry["required"] = True
        if isinstance(k.get("rangelist"), list):
            entry["rangelist"] = k["rangelist"]
        rng = k.get("range")
        if isinstance(rng, dict) and ("min" in rng or "max" in rng):
            entry["range"] = {b: rng[b] for b in ("min", "max") if b in rng}
        if k.get("subkeys"):
            entry["subkeys"] = keys(k["subkeys"])
        out.append(entry)
    return out


def build(schema):
    root = os.path.join(schema, "declarative", "declarations")
    result = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "*.yaml"))):
        kind = KINDS.get(os.path.basename(os.path.dirname(path)))
        if kind is None:
            continue
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        payload = doc.get("payload") or {}
        dtype = payload.get("declarationtype")
        if not dtype:
            continue
        result[dtype] = {
            "kind": kind,
            "apply": payload.get("apply", "multiple"),
            "introduced": introduced(payload.get("supportedOS")),
            "keys": keys(doc.get("payloadkeys")),
        }
    return json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schema", default=os.environ.get("LANYARD_APPLE_SCHEMA") or os.path.join(REPO, DEFAULT_SCHEMA))
    parser.add_argument("--out", default=os.path.join(REPO, DEFAULT_OUT))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = build(args.schema)
    if args.check:
        with open(args.out, encoding="utf-8") as fh:
            if fh.read() != text:
                print(f"{args.out} is out of date: run python3 tools/declaration_schema.py", file=sys.stderr)
                sys.exit(1)
        return
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
