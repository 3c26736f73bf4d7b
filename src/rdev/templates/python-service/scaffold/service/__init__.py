"""The HTTP service package; see service/app.py."""
