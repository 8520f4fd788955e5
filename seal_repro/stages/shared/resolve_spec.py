"""Stage resolve_spec: validate the spec params.yaml selects and write it resolved, one file per section.

Downstream stages depend only on the section files they read, so editing e.g. `inner_loop.lr` re-runs the
inner-loop stages but not data preparation.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from seal_repro.io import atomic_write_text
from seal_repro.spec import dump_spec_yaml, load_spec, spec_hash
from seal_repro.stages.helpers import RESOLVED, WRITER_FILE, stage_main


def add_args(p):
    p.add_argument("--params", default="params.yaml", help="file holding the spec (default params.yaml)")
    p.add_argument("--section", default=None, help="key of that file holding the spec (e.g. knowledge)")
    p.add_argument("--out", required=True, help="folder for resolved.yaml, one <section>.yaml per top-level key, and "
                   "writer.yaml (self_edit.writer alone)")


def run(args):
    spec = load_spec(args.params, section=args.section)
    out = Path(args.out)
    dumped = spec.model_dump(mode="json")
    for key, value in dumped.items():
        atomic_write_text(out / f"{key}.yaml", yaml.safe_dump({key: value}, sort_keys=True))
    # The self-edit writer alone (teacher–student; null: the adapted model writes), so prepare_model depends on
    # it and not on every sampling setting beside it.
    writer = (dumped.get("self_edit") or {}).get("writer")
    atomic_write_text(out / WRITER_FILE, yaml.safe_dump({"writer": writer}, sort_keys=True))
    atomic_write_text(out / RESOLVED, dump_spec_yaml(spec))
    atomic_write_text(out / "hash.txt", spec_hash(spec) + "\n")
    print(f"spec {args.params}{':' + args.section if args.section else ''} -> {out} (hash {spec_hash(spec)[:12]})")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
