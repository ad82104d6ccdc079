"""What every check_*.py prints: one `ok` line per thing verified, one `FAIL`
line per problem, naming the file, and an exit status."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Report:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.failures: list[str] = []

    def ok(self, message: str) -> None:
        if not self.quiet:
            print(f"ok    {message}")

    def fail(self, where: Path | str, problem: str) -> None:
        line = f"{_shown(where)}: {problem}"
        self.failures.append(line)
        if not self.quiet:
            print(f"FAIL  {line}")

    def check(self, condition: bool, where: Path | str, what: str, problem: str) -> bool:
        """`what` says what holds; `problem` what is wrong when it does not."""
        if condition:
            self.ok(f"{_shown(where)}: {what}")
        else:
            self.fail(where, problem)
        return condition

    def finish(self, name: str, good: str = "all good") -> int:
        """The exit status, after a summary naming every problem."""
        if self.failures:
            print(f"\n{name}: {len(self.failures)} problem(s):", file=sys.stderr)
            for line in self.failures:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"{name}: {good}")
        return 0


def _shown(where: Path | str) -> str:
    return str(where.relative_to(ROOT)) if isinstance(where, Path) else where
