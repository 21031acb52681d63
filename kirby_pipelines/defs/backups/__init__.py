"""Database backups: a daily pg_dump per database, its retention and a restore check."""
