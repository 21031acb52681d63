"""SQL models of dbt_like_sql/, run by DuckDB over the lake, one asset each."""
