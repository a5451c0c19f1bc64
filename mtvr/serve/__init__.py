"""`mtvr serve`: search behind an HTTP API and a web page (FastAPI + uvicorn).

``create_app(retriever, videos_dir=...)`` returns the FastAPI application, for embedding in another
service; ``mtvr serve MODEL --index DIR --videos DIR`` runs it on 127.0.0.1.
"""

from .app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
