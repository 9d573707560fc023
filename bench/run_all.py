"""Run every benchmark in bench/ in turn; each writes its own section of BENCHMARKS.md.

    .venv/bin/python bench/run_all.py [--only provenance,audit,...]

Some benchmarks need extra set-up (the watermark anchors' venv, the phash corpus); each script's
docstring says what, and a script that cannot run reports why and the others go on.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ["provenance", "watermark", "audit", "cloudfront", "fingerprint", "posture"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(ORDER))
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or ORDER
    failed = []
    for name in names:
        script = BENCH / f"bench_{name}.py"
        if not script.exists():
            print(f"no such benchmark: {name}", file=sys.stderr)
            return 2
        t0 = time.time()
        print(f"== bench_{name}.py", flush=True)
        rc = subprocess.call([sys.executable, str(script)])
        print(f"== bench_{name}.py exited {rc} after {time.time() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
