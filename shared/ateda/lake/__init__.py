"""The lake: object stores (bucket and lake), the Iceberg tables, quarantine and dead letters."""
