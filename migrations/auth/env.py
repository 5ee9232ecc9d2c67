from migrations.common import run_migrations
from services.auth.models import metadata

run_migrations("auth", metadata)
