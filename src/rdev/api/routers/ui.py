"""The web dashboard at /ui (placeholder while it is written)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    return None
