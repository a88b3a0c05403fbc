"""``python -m multimodal_df.provenance FILE...``: print each file's provenance report as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from .inspector import inspect_provenance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m multimodal_df.provenance", description=__doc__)
    ap.add_argument("files", nargs="+", help="image, audio or video files")
    ap.add_argument("--trust-anchors", default=None, help="PEM bundle of trusted C2PA root certificates")
    ap.add_argument("--brief", action="store_true", help="print only path, hint, reason and timings")
    args = ap.parse_args(argv)
    for path in args.files:
        report = inspect_provenance(path, trust_anchors=args.trust_anchors)
        out = report.to_json()
        if args.brief:
            ev = out["evidence"]
            out = {"path": path, "hint": ev["hint"], "reason": ev["reason"], "timings_ms": out["timings_ms"]}
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
