"""The explorer: one ASGI app (FastAPI) serving the HTTP API, an IVOA Simple Cone Search and the web pages over the
published warehouse (docs/explorer.md). ``ateda serve`` runs it with uvicorn; the cluster runs the same app as a
Knative Service."""
