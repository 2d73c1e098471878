from inference.cli import app

app()
