"""Where spooled readings end up: MySQL/MariaDB, or a local SQLite database (the embedded default)."""
