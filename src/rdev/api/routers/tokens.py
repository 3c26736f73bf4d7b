"""/tokens: admin-only token management."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response

from rdev.api.deps import Admin, ContainerDep
from rdev.api.schemas import TokenCreate

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201)
async def create_token(body: TokenCreate, c: ContainerDep, p: Admin) -> dict[str, Any]:
    """Mint a token. The token is in this answer only; the server keeps its hash."""
    p.require("admin")
    tid, token = await c.tokens.create(body.name, body.scopes, body.projects)
    return {
        "id": tid,
        "name": body.name,
        "token": token,
        "scopes": body.scopes,
        "projects": body.projects,
    }


@router.get("")
async def list_tokens(c: ContainerDep, p: Admin) -> list[dict[str, Any]]:
    p.require("admin")
    return [asdict(t) for t in await c.tokens.list()]


@router.delete("/{token_id}", status_code=204)
async def revoke_token(token_id: str, c: ContainerDep, p: Admin) -> Response:
    p.require("admin")
    await c.tokens.revoke(token_id)
    return Response(status_code=204)
