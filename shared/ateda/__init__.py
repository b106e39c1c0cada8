"""ATEDA shared package: code used by every function (decoding, storage, catalog, events, metrics, config)."""
