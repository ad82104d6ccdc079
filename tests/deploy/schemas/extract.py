#!/usr/bin/env python3
"""Extracts one version's openAPIV3Schema from a CustomResourceDefinition into
JSON, unchanged but for a `$comment` naming where it came from.

    extract.py GIT_DIR REPO TAG PATH VERSION OUT.json

GIT_DIR is a clone of REPO; the CRD is read at TAG with `git show`, so the
file says exactly which commit it is. README.md lists the commands run."""

import json
import subprocess
import sys

import yaml


def main() -> None:
    git_dir, repo, tag, path, version, out = sys.argv[1:]
    commit = subprocess.run(
        ["git", "-C", git_dir, "rev-list", "-n1", tag], check=True, capture_output=True, text=True
    ).stdout.strip()
    crd = yaml.safe_load(
        subprocess.run(
            ["git", "-C", git_dir, "show", f"{commit}:{path}"], check=True, capture_output=True, text=True
        ).stdout
    )
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    schema = {
        "$comment": (
            f"{crd['spec']['group']}/{version} {crd['spec']['names']['kind']}: openAPIV3Schema of "
            f"github.com/{repo} {tag} ({commit}) {path}"
        ),
        **served["schema"]["openAPIV3Schema"],
    }
    with open(out, "w") as f:
        json.dump(schema, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
