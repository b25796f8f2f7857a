"""The members' door: the HTTP API over the domain's services."""
