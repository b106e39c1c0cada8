"""Rubin (LSST) survey knowledge with no I/O: the registry of official alert schemas (read as files from the installed
``lsst-alert-packet`` distribution, never imported), the alert decoding (Avro container, Confluent frame, gzip of
either) and its Arrow rows for ``bronze.lsst_alert``. docs/rubin.md."""
