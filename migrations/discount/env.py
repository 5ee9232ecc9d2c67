from migrations.common import run_migrations
from services.discount.models import metadata

run_migrations("discount", metadata)
