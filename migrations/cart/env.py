from migrations.common import run_migrations
from services.cart.models import metadata

run_migrations("cart", metadata)
