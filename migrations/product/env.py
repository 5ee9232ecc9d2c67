from migrations.common import run_migrations
from services.product.models import metadata

run_migrations("product", metadata)
