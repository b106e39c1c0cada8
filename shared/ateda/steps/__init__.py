"""The logic of each deployed function (split, bronze, crossmatch, dbt refresh, maintenance, MinIO bridge): no argparse,
no printing; functions/<name>/main.py calls it."""
