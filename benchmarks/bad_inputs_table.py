"""Print the bad-input table: every case of ``tests/test_bad_inputs.py`` with its message and node counts.

Runs that test file with pytest (on the test suite's temporary profile: PostgreSQL + RabbitMQ when
they answer) and prints one row per case: the input, whether it went through the CLI or the API, the
message the user sees, and the number of nodes in the profile before and after. Every row should say
the same count before and after (a cluster file that sets up fine keeps its computer and codes).

Run: ``python benchmarks/bad_inputs_table.py`` (about a minute) or ``--markdown`` for a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="Print a Markdown table.")
    parser.add_argument("--width", type=int, default=110, help="Cut messages to this many characters.")
    args = parser.parse_args(argv)
    from tests.test_bad_inputs import TABLE_ENV

    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "rows.jsonl"
        environment = dict(os.environ, **{TABLE_ENV: str(table)})
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_bad_inputs.py", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
        )
        rows = [json.loads(line) for line in table.read_text().splitlines()] if table.exists() else []
    from tabulate import tabulate

    def cut(text: str) -> str:
        return text if len(text) <= args.width else text[: args.width - 3] + "..."

    body = [
        (number, row["input"], row["via"], cut(row["message"]), row["nodes_before"], row["nodes_after"])
        for number, row in enumerate(rows, 1)
    ]
    headers = ["#", "input", "via", "message", "nodes before", "nodes after"]
    print(tabulate(body, headers=headers, tablefmt="github" if args.markdown else "simple"))
    unchanged = sum(row["nodes_before"] == row["nodes_after"] for row in rows)
    print(f"\n{len(rows)} bad inputs, {unchanged} with the same node count before and after")
    print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-2000:])
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
