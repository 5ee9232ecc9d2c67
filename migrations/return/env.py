from migrations.common import run_migrations
from services.returns.models import metadata

run_migrations("return", metadata)
