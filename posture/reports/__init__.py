"""PDF reports: a context built from the database, rendered by WeasyPrint."""
