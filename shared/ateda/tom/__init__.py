"""TOM Toolkit integration (docs/explorer.md, "TOM Toolkit"): a broker module a TOM loads by its dotted path.

It runs inside a TOM's Django process, not in ATEDA's: it imports Django and tomtoolkit, which ATEDA does not
install, and nothing from the rest of this package; nothing in the package imports it (tests/test_architecture.py).
"""
