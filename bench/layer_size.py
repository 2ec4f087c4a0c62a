"""Size of the shared layer's dependencies: pip installs layers/common/requirements.txt (the pins `make lock`
writes for Lambda's Python 3.13 on arm64) into a temporary folder from wheels, without bytecode, as
`sam build` does, then prints the total unzipped size, the largest packages, and the library's own size
(support_agent and the policies). --bytecode also compiles it (what precompiled .pyc files would add).

Usage: python bench/layer_size.py [--top 12] [--bytecode]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"


def size(path: Path) -> int:
    """Bytes of the files under `path` (or of `path`)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--bytecode", action="store_true", help="also measure the layer with .pyc files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as target:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--no-compile",
                "--only-binary=:all:",
                "--platform",
                "manylinux2014_aarch64",
                "--python-version",
                "3.13",
                "--implementation",
                "cp",
                "--target",
                target,
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
        )
        folder = Path(target)
        # Group each top-level entry with its metadata folder under the distribution's import name.
        sizes: dict[str, int] = {}
        for entry in folder.iterdir():
            name = entry.name.split("-")[0] if entry.name.endswith((".dist-info", ".data")) else entry.name
            name = name.removesuffix(".py").lower().replace("-", "_")
            sizes[name] = sizes.get(name, 0) + size(entry)
        total = sum(sizes.values())
        compiled = 0
        if args.bytecode:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "compileall",
                    "-q",
                    "-j",
                    "0",
                    "--invalidation-mode",
                    "unchecked-hash",
                    target,
                ],
                check=True,
            )
            compiled = size(folder) - total
    library = size(ROOT / "layers" / "common" / "support_agent") + size(
        ROOT / "layers" / "common" / "policies"
    )
    pins = sum(1 for line in REQUIREMENTS.read_text().splitlines() if "==" in line)
    print(f"layer dependencies ({pins} pinned packages, Python 3.13 arm64 wheels): {mb(total)} unzipped")
    for name, n in sorted(sizes.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {name:<28} {mb(n):>9}  {n / total:5.1%}")
    print(f"the library itself (support_agent and policies/): {mb(library)}")
    if args.bytecode:
        print(f"precompiled bytecode (.pyc, {sys.version.split(maxsplit=1)[0]}) would add {mb(compiled)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
