"""Who is calling: bearer access tokens (JWT from the auth service) and role checks."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from api.deps import SettingsDep
from services.auth.tokens import verify_access_token

bearer = HTTPBearer(auto_error=False, description="Access token from POST /v1/auth/login")


class Caller(BaseModel):
    user_id: uuid.UUID
    roles: list[str]

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


async def _caller(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    if credentials is None:
        raise HTTPException(401, "missing bearer access token", headers={"WWW-Authenticate": "Bearer"})
    claims = verify_access_token(settings, credentials.credentials)  # InvalidAccessToken -> 401 problem
    return Caller(user_id=claims.sub, roles=claims.roles)


async def _optional_caller(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller | None:
    if credentials is None:
        return None
    return await _caller(settings, credentials)


CurrentUser = Annotated[Caller, Depends(_caller)]
OptionalUser = Annotated[Caller | None, Depends(_optional_caller)]


def require_role(role: str) -> Callable[[Caller], Awaitable[Caller]]:
    async def check(caller: CurrentUser) -> Caller:
        if not caller.has(role):
            raise HTTPException(403, f"this route needs the '{role}' role")
        return caller

    return check


SupportUser = Annotated[Caller, Depends(require_role("support"))]
AdminUser = Annotated[Caller, Depends(require_role("admin"))]
