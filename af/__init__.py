"""The `af` command-line tool."""
