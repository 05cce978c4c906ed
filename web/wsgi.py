"""The WSGI application the web process serves (`python -m web.serve`, see web/serve.py)."""

from web.app import create_app

app = create_app()
