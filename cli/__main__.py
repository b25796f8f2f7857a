"""`python -m cli` runs the `huzhu` command."""

from cli.entry import main

main()
