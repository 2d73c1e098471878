"""python -m inference: see inference/cli.py."""
from inference.cli import app

if __name__ == "__main__":  # a spawned child process re-imports __main__: do not re-run
    app()
