"""FastAPI dependencies, as ``Annotated`` aliases used by every route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from api.temporal_client import LazyTemporalClient
from core.db import SessionFactory
from core.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _temporal(request: Request) -> LazyTemporalClient:
    lazy: LazyTemporalClient = request.app.state.temporal
    return lazy


async def _temporal_client(lazy: Annotated[LazyTemporalClient, Depends(_temporal)]) -> Client:
    return await lazy.get()


def _sessions(request: Request) -> dict[str, SessionFactory]:
    sessions: dict[str, SessionFactory] = request.app.state.sessions
    return sessions


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionsDep = Annotated[dict[str, SessionFactory], Depends(_sessions)]
LazyTemporalDep = Annotated[LazyTemporalClient, Depends(_temporal)]
TemporalDep = Annotated[Client, Depends(_temporal_client)]
