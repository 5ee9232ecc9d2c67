from migrations.common import run_migrations
from services.notification.models import metadata

run_migrations("notification", metadata)
