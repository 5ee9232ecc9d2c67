from migrations.common import run_migrations
from services.order.models import metadata

run_migrations("order", metadata)
