"""Units of work over the database: each takes a session and the moment, and applies the rules."""
