"""The operator's `huzhu` command."""
