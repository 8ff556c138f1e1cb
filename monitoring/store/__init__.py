"""Storage: the Parquet lake, ingestion into it, and the DuckDB warehouse (connections,
the schema, and the tables by family: readings, ingest audit, results). All of aemon's
SQL lives in this wing; it uses no other wing of monitoring."""
