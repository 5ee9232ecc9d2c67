from migrations.common import run_migrations
from services.payment.models import metadata

run_migrations("payment", metadata)
