"""The warehouse over bronze: DuckDB views, dbt runs (silver and gold), science queries and plots."""
