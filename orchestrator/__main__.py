"""``python -m orchestrator``: the command line."""

from orchestrator.cli import program

if __name__ == "__main__":
    raise SystemExit(program())
