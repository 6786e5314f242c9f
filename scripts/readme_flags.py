"""Write each command's flag table into README.md from its parser, or check that it is there.

python scripts/readme_flags.py          # rewrite the tables between the README's flag markers
python scripts/readme_flags.py --check  # exit 1 when a table differs from its command's --help

A table sits between `<!-- flags: COMMAND -->` and `<!-- end flags -->`; tests run --check, so
`--help` and the README cannot drift.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks live in the checkout, not in the package

from benchmarks import bench  # noqa: E402
from mnist_keras import train, tune  # noqa: E402
from mnist_keras.flags import markdown_table  # noqa: E402

PARSERS = {
    "python -m mnist_keras.train": train.build_parser,
    "python -m mnist_keras.tune": tune.build_parser,
    "python -m benchmarks.bench": bench.build_parser,
}
BLOCK = re.compile(
    r"(<!-- flags: (?P<command>[^>]+?) -->\n)(?P<table>.*?)(<!-- end flags -->)", re.S
)


def render(readme: str) -> str:
    """`readme` with every flag table regenerated."""

    def table(match: re.Match) -> str:
        parser = PARSERS[match["command"]]()
        return f"{match[1]}\n{markdown_table(parser)}\n{match[4]}"

    return BLOCK.sub(table, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on a difference")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    text = args.readme.read_text()
    found = {m["command"] for m in BLOCK.finditer(text)}
    if found != set(PARSERS):
        print(f"{args.readme}: flag tables for {sorted(found)}, expected {sorted(PARSERS)}")
        return 1
    wanted = render(text)
    if args.check:
        if wanted != text:
            print(f"{args.readme}: a flag table differs from --help; run {sys.argv[0]}")
            return 1
        return 0
    args.readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
