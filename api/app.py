"""The FastAPI application factory. Run with ``uvicorn api.app:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.middleware import BodySizeLimit
from api.routes import (
    admin,
    auth,
    carrier_webhooks,
    cart,
    catalog,
    health,
    me,
    orders,
    returns,
    shipments,
    support,
    webhooks,
)
from api.temporal_client import LazyTemporalClient
from core.db import create_engine, session_factory
from core.registry import SERVICE_NAMES
from core.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.temporal = LazyTemporalClient(settings)
        # The API reads and single-service writes go to the owning service's database, as that
        # service's role; engines connect lazily, so a database that is down fails only its routes.
        engines = {
            name: create_engine(settings, name, pool_size=settings.api_db_pool_size) for name in SERVICE_NAMES
        }
        app.state.sessions = {name: session_factory(engine) for name, engine in engines.items()}
        yield
        for engine in engines.values():
            await engine.dispose()

    app = FastAPI(
        title="sagashop API",
        version="0.1.0",
        description="Shoppers, support staff and admins of a saga-orchestrated e-commerce platform.",
        lifespan=lifespan,
        contact={"name": "sagashop maintainers"},
        openapi_tags=[
            {
                "name": "support",
                "description": "Support staff (`support` role; `admin` implies it): order lookup with the "
                "live saga state, notes, parked sagas and their resolution.",
            },
            {"name": "admin: catalog", "description": "Products, variants, images and categories (`admin`)."},
            {"name": "admin: inventory", "description": "Stock takes and stock levels (`admin`)."},
            {"name": "admin: discounts", "description": "Coupons and automatic promotions (`admin`)."},
            {"name": "admin: shipping", "description": "Carriers, zones, methods and rates (`admin`)."},
            {"name": "admin: email templates", "description": "Templates, versions, previews (`admin`)."},
            {"name": "returns", "description": "Shoppers' return requests and support's return decisions."},
        ],
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.include_router(health.router)
    app.include_router(orders.router)
    app.include_router(webhooks.router)
    app.include_router(catalog.router)
    app.include_router(cart.router)
    app.include_router(auth.router)
    app.include_router(me.router)
    app.include_router(support.router)
    app.include_router(admin.router)
    app.include_router(shipments.router)
    app.include_router(returns.router)
    app.include_router(carrier_webhooks.router)
    return app
