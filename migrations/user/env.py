from migrations.common import run_migrations
from services.user.models import metadata

run_migrations("user", metadata)
