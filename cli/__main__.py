"""`python -m cli` runs the `huzhu` command."""

from cli.main import app

app()
