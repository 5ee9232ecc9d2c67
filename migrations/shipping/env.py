from migrations.common import run_migrations
from services.shipping.models import metadata

run_migrations("shipping", metadata)
