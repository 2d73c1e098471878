"""Turns a dataset into a merged model directory that vLLM serves as it is."""
from training.cli import app

if __name__ == "__main__":  # a spawned child process re-imports __main__: do not re-run
    app()
