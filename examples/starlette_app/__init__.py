"""The minimal integration: a plain Starlette app wrapped with pinsignal (see ``app.py``)."""
