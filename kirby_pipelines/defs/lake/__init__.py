"""The Parquet lake: daily exports of each table, reference files, and their checks."""
