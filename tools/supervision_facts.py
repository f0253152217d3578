#!/usr/bin/env python3
"""Write data-apple/supervision.json: what needs a supervised device, from Apple's schema.

Apple's device-management schema (https://github.com/apple/device-management) says, per
operating system, which configuration-profile payloads and keys, and which MDM commands, need a
supervised device:

- profiles/*.yaml: `payload.supportedOS.<OS>.supervised` (the whole payload), and
  `payloadkeys[].supportedOS.<OS>.supervised` for a key (also on `subkeys`, at any depth);
  TopLevel.yaml describes the profile's outer dictionary, CommonPayloadKeys.yaml the keys every
  payload has;
- commands/*.yaml: `payload.supportedOS.<OS>.supervised` (the whole request type), and the same
  on `payloadkeys` (e.g. the items of a Settings command).

Lanyard manages iPads, iPhones and Macs, so only `iOS` (which covers iPadOS) and `macOS` are
kept. A key is written with its path from the payload (`AllowList/AllowListItem`: an array's
items are named by their schema name) and, when the schema gives a plain default, that default:
a profile that sets a key to its default asks nothing the device would ignore. A nested key is
left out when a key above it already needs supervision on the same systems.

The output is sorted and stable, so regenerating it changes it only when the schema does.
Lanyard embeds it at build time (src/profiles/supervision.rs); a test checks it matches the
schema whenever the schema is present.

Usage:
    python3 tools/supervision_facts.py            # rewrite data-apple/supervision.json
    python3 tools/supervision_facts.py --check    # exit 1 if it is out of date
    python3 tools/supervision_facts.py --out -    # print it

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
DEFAULT_OUT = os.path.join("data-apple", "supervision.json")


def supervised_oses(supported):
    """The systems (of OSES) on which `supportedOS` says supervision is needed."""
    if not isinstance(supported, dict):
        return []
    return [os_ for os_ in OSES if isinstance(supported.get(os_), dict) and supported[os_].get("supervised") is True]


def plain_default(key):
    d = key.get("default")
    return d if isinstance(d, (bool, int, float, str)) else None


def walk_keys(keys, prefix, covered, out, seen):
    """Add every key under `keys` that needs supervision to `out` (path -> entry).

    `covered`: the systems on which a key above already needs supervision. `seen`: the schema
    nodes on the way down (YAML aliases can make a key its own descendant).
    """
    for key in keys or []:
        if not isinstance(key, dict) or id(key) in seen or "key" not in key:
            continue
        name = str(key["key"])
        if "/" in name:
            sys.exit(f"a key name with '/' in it: {name!r} (the path separator): extend the format")
        path = f"{prefix}/{name}" if prefix else name
        oses = supervised_oses(key.get("supportedOS"))
        new = [o for o in oses if o not in covered]
        if new:
            entry = out.setdefault(path, {"os": []})
            entry["os"] = sorted(set(entry["os"]) | set(new))
            default = plain_default(key)
            if default is not None:
                entry["default"] = default
        walk_keys(key.get("subkeys"), path, sorted(set(covered) | set(oses)), out, seen | {id(key)})


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def commit_of(schema):
    """The upstream commit the copy was taken from, if SOURCE.txt (next to mdm/) says."""
    source = os.path.join(schema, "SOURCE.txt")
    if not os.path.isfile(source):
        return None
    with open(source, encoding="utf-8") as f:
        for line in f:
            if line.startswith("Commit:"):
                return line.split()[1]
    return None


def supervised_items(mdm, folder, id_key, whole_name):
    """{id: {whole_name: [OS], "keys": {...}}} for the schema files of one folder, merging files
    that describe the same id (com.apple.MCX is split over several)."""
    items = {}
    for path in sorted(glob.glob(os.path.join(mdm, folder, "*.yaml"))):
        doc = load(path)
        payload = doc.get("payload") or {}
        ident = payload.get(id_key)
        if not ident:
            continue
        whole = supervised_oses(payload.get("supportedOS"))
        keys = {}
        walk_keys(doc.get("payloadkeys"), "", whole, keys, frozenset())
        if not whole and not keys:
            continue
        entry = items.setdefault(ident, {})
        if whole:
            entry[whole_name] = sorted(set(entry.get(whole_name, [])) | set(whole))
        if keys:
            entry.setdefault("keys", {}).update(keys)
    return items


def facts(schema):
    mdm = os.path.join(schema, "mdm")
    profiles = supervised_items(mdm, "profiles", "payloadtype", "payload")
    commands = supervised_items(mdm, "commands", "requesttype", "request")
    return {
        "about": "Generated by tools/supervision_facts.py from Apple's device-management schema: what needs a "
        "supervised device, on iOS/iPadOS (\"iOS\") and macOS. Do not edit; regenerate.",
        "schema_commit": commit_of(schema),
        "profiles": profiles,
        "commands": commands,
    }


def render(data):
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schema", help="the apple-device-management directory (default: $LANYARD_APPLE_SCHEMA or ../shared/apple-device-management)")
    ap.add_argument("--out", help=f"where to write (default {DEFAULT_OUT}; - for stdout)")
    ap.add_argument("--check", action="store_true", help="do not write: exit 1 if the file differs from what the schema gives")
    args = ap.parse_args()
    schema = args.schema or os.environ.get("LANYARD_APPLE_SCHEMA") or os.path.join(REPO, DEFAULT_SCHEMA)
    if not os.path.isdir(os.path.join(schema, "mdm", "profiles")):
        sys.exit(f"no Apple schema at {schema} (expected mdm/profiles/*.yaml there): set LANYARD_APPLE_SCHEMA or --schema")
    text = render(facts(schema))
    out = args.out or os.path.join(REPO, DEFAULT_OUT)
    if args.check:
        current = open(out, encoding="utf-8").read() if os.path.isfile(out) else ""
        if current != text:
            print(f"{out} is out of date with {schema}: run python3 tools/supervision_facts.py", file=sys.stderr)
            sys.exit(1)
        return
    if out == "-":
        sys.stdout.write(text)
        return
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    data = json.loads(text)
    keys = sum(len(p.get("keys", {})) for p in data["profiles"].values())
    whole = sum(1 for p in data["profiles"].values() if "payload" in p)
    cmds = sum(1 for c in data["commands"].values() if "request" in c)
    print(f"wrote {out}: {whole} payload types and {keys} profile keys, {cmds} commands need supervision")


if __name__ == "__main__":
    main()
