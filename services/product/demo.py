"""A deterministic demo catalog: a category tree, a few hundred products with variants, images, tags,
stock and some reviews. Loading twice changes nothing (rows are keyed by SKU/slug and deterministic
ids; existing rows, stock levels included, are left as they are)."""

from __future__ import annotations

import itertools
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.product.models import (
    ProductStatus,
    categories,
    inventory,
    product_categories,
    product_images,
    product_tags,
    product_variants,
    reviews,
)
from services.product.models import products as product_table

NAMESPACE = uuid.UUID("5a9a5b0e-4d1c-4e8e-9a57-0d3e6f2b7c11")
SKU_PREFIX = "DEMO-"
CURRENCY = "USD"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


class DemoCatalogSummary(BaseModel):
    """Demo rows present after the load, and how many products this run created."""

    categories: int
    products: int
    variants: int
    images: int
    tags: int
    reviews: int
    created_products: int


@dataclass(frozen=True)
class Kind:
    """What a leaf category sells: nouns, option dimensions, price range (cents), weight range (g)."""

    nouns: tuple[str, ...]
    sizes: tuple[str, ...]
    colors: tuple[str, ...]
    price: tuple[int, int]
    weight: tuple[int, int]
    brands: tuple[str, ...]
    tags: tuple[str, ...]
    materials: tuple[str, ...]


APPAREL_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
SHOE_SIZES = ("38", "39", "40", "41", "42", "43", "44", "45")
COLORS = ("black", "white", "navy", "grey", "red", "green", "beige", "blue")
APPAREL_BRANDS = ("Northwind", "Fjordline", "Urban Thread", "Cotton & Co", "Meridian")
OUTDOOR_BRANDS = ("Trailborn", "Summit Gear", "Alder Peak", "Fjordline")
HOME_BRANDS = ("Casa Verde", "Hearth & Oak", "Linnea", "Kitchenry")
TECH_BRANDS = ("Voltra", "Sonique", "Pulse Audio", "Kinetic Labs")

# (slug, name, parent slug); a leaf's Kind in LEAVES.
TREE: tuple[tuple[str, str, str | None], ...] = (
    ("clothing", "Clothing", None),
    ("mens-clothing", "Men", "clothing"),
    ("mens-t-shirts", "T-Shirts", "mens-clothing"),
    ("mens-jeans", "Jeans", "mens-clothing"),
    ("mens-jackets", "Jackets", "mens-clothing"),
    ("womens-clothing", "Women", "clothing"),
    ("womens-dresses", "Dresses", "womens-clothing"),
    ("womens-tops", "Tops", "womens-clothing"),
    ("womens-jackets", "Jackets", "womens-clothing"),
    ("kids-clothing", "Kids", "clothing"),
    ("footwear", "Footwear", None),
    ("sneakers", "Sneakers", "footwear"),
    ("boots", "Boots", "footwear"),
    ("sandals", "Sandals", "footwear"),
    ("home-kitchen", "Home & Kitchen", None),
    ("cookware", "Cookware", "home-kitchen"),
    ("tableware", "Tableware", "home-kitchen"),
    ("bedding", "Bedding", "home-kitchen"),
    ("home-decor", "Decor", "home-kitchen"),
    ("electronics", "Electronics", None),
    ("audio", "Audio", "electronics"),
    ("headphones", "Headphones", "audio"),
    ("speakers", "Speakers", "audio"),
    ("phone-accessories", "Phone Accessories", "electronics"),
    ("sports-outdoors", "Sports & Outdoors", None),
    ("camping", "Camping", "sports-outdoors"),
    ("fitness", "Fitness", "sports-outdoors"),
    ("cycling", "Cycling", "sports-outdoors"),
)

LEAVES: dict[str, Kind] = {
    "mens-t-shirts": Kind(
        ("T-Shirt", "Crew Tee", "Henley"),
        APPAREL_SIZES,
        COLORS,
        (1500, 4500),
        (150, 250),
        APPAREL_BRANDS,
        ("basics", "cotton"),
        ("Cotton", "Organic Cotton", "Linen Blend"),
    ),
    "mens-jeans": Kind(
        ("Jeans", "Chinos", "Denim Trousers"),
        ("28", "30", "32", "34", "36"),
        ("indigo", "black", "grey"),
        (4500, 12000),
        (500, 800),
        APPAREL_BRANDS,
        ("denim",),
        ("Denim", "Stretch Denim", "Selvedge Denim"),
    ),
    "mens-jackets": Kind(
        ("Jacket", "Parka", "Bomber"),
        APPAREL_SIZES,
        ("black", "olive", "navy"),
        (8000, 25000),
        (700, 1500),
        APPAREL_BRANDS + OUTDOOR_BRANDS,
        ("outerwear", "winter"),
        ("Wool", "Down", "Waxed Cotton"),
    ),
    "womens-dresses": Kind(
        ("Dress", "Wrap Dress", "Maxi Dress"),
        APPAREL_SIZES,
        COLORS,
        (3500, 15000),
        (250, 500),
        APPAREL_BRANDS,
        ("summer",),
        ("Linen", "Silk", "Viscose"),
    ),
    "womens-tops": Kind(
        ("Blouse", "Top", "Tank Top"),
        APPAREL_SIZES,
        COLORS,
        (2000, 6000),
        (120, 250),
        APPAREL_BRANDS,
        ("basics",),
        ("Cotton", "Silk", "Modal"),
    ),
    "womens-jackets": Kind(
        ("Trench Coat", "Jacket", "Puffer"),
        APPAREL_SIZES,
        ("camel", "black", "cream"),
        (9000, 28000),
        (600, 1400),
        APPAREL_BRANDS + OUTDOOR_BRANDS,
        ("outerwear", "winter"),
        ("Wool", "Down", "Cotton Gabardine"),
    ),
    "kids-clothing": Kind(
        ("Hoodie", "Pyjama Set", "Rain Jacket"),
        ("98", "110", "122", "134", "146"),
        ("yellow", "blue", "red"),
        (1500, 5000),
        (150, 400),
        APPAREL_BRANDS,
        ("kids",),
        ("Cotton", "Fleece", "Recycled Polyester"),
    ),
    "sneakers": Kind(
        ("Sneakers", "Runners", "Trainers"),
        SHOE_SIZES,
        ("white", "black", "grey"),
        (5000, 16000),
        (700, 1000),
        APPAREL_BRANDS + OUTDOOR_BRANDS,
        ("running",),
        ("Leather", "Mesh", "Suede"),
    ),
    "boots": Kind(
        ("Boots", "Chelsea Boots", "Hiking Boots"),
        SHOE_SIZES,
        ("brown", "black"),
        (9000, 24000),
        (1100, 1800),
        OUTDOOR_BRANDS,
        ("winter", "outdoor"),
        ("Leather", "Nubuck", "Gore-Tex"),
    ),
    "sandals": Kind(
        ("Sandals", "Slides", "Flip-Flops"),
        SHOE_SIZES,
        ("tan", "black"),
        (2000, 7000),
        (300, 600),
        APPAREL_BRANDS,
        ("summer",),
        ("Cork", "Leather", "Rubber"),
    ),
    "cookware": Kind(
        ("Frying Pan", "Saucepan", "Dutch Oven"),
        ("20 cm", "24 cm", "28 cm"),
        ("steel", "black", "red"),
        (3000, 20000),
        (900, 4500),
        HOME_BRANDS,
        ("kitchen",),
        ("Cast Iron", "Stainless Steel", "Carbon Steel"),
    ),
    "tableware": Kind(
        ("Plate Set", "Bowl Set", "Mug"),
        ("set of 2", "set of 4", "set of 6"),
        ("white", "sand", "slate"),
        (1500, 8000),
        (400, 2500),
        HOME_BRANDS,
        ("kitchen", "gift"),
        ("Stoneware", "Porcelain", "Glass"),
    ),
    "bedding": Kind(
        ("Duvet Cover", "Sheet Set", "Pillowcase Pair"),
        ("single", "double", "king"),
        ("white", "grey", "sage"),
        (2500, 12000),
        (500, 1500),
        HOME_BRANDS,
        ("bedroom",),
        ("Linen", "Percale Cotton", "Bamboo"),
    ),
    "home-decor": Kind(
        ("Vase", "Throw Blanket", "Candle"),
        ("small", "large"),
        ("natural", "charcoal", "terracotta"),
        (1200, 9000),
        (200, 1500),
        HOME_BRANDS,
        ("gift",),
        ("Ceramic", "Wool", "Soy Wax"),
    ),
    "headphones": Kind(
        ("Wireless Headphones", "Earbuds", "Studio Headphones"),
        (),
        ("black", "white", "silver"),
        (4000, 35000),
        (50, 350),
        TECH_BRANDS,
        ("wireless", "audio"),
        ("Noise-Cancelling", "Bluetooth", "Hi-Fi"),
    ),
    "speakers": Kind(
        ("Portable Speaker", "Smart Speaker", "Bookshelf Speakers"),
        (),
        ("black", "white", "blue"),
        (3000, 40000),
        (300, 4000),
        TECH_BRANDS,
        ("audio",),
        ("Waterproof", "Bluetooth", "Hi-Fi"),
    ),
    "phone-accessories": Kind(
        ("Phone Case", "USB-C Charger", "Charging Cable"),
        ("1 m", "2 m"),
        ("black", "clear", "blue"),
        (900, 4500),
        (30, 200),
        TECH_BRANDS,
        ("accessories",),
        ("Silicone", "Braided", "Fast"),
    ),
    "camping": Kind(
        ("Tent", "Sleeping Bag", "Camping Stove"),
        ("1-person", "2-person", "4-person"),
        ("green", "orange"),
        (4000, 45000),
        (800, 4500),
        OUTDOOR_BRANDS,
        ("outdoor",),
        ("Ultralight", "Three-Season", "Insulated"),
    ),
    "fitness": Kind(
        ("Yoga Mat", "Dumbbell Set", "Resistance Bands"),
        ("light", "medium", "heavy"),
        ("purple", "black", "teal"),
        (1500, 15000),
        (500, 12000),
        OUTDOOR_BRANDS + TECH_BRANDS,
        ("fitness",),
        ("Natural Rubber", "Cork", "Neoprene"),
    ),
    "cycling": Kind(
        ("Bike Helmet", "Cycling Jersey", "Bike Light"),
        ("S", "M", "L"),
        ("black", "neon", "white"),
        (2500, 18000),
        (100, 450),
        OUTDOOR_BRANDS,
        ("cycling", "outdoor"),
        ("Aero", "Merino", "Rechargeable"),
    ),
}

ADJECTIVES = ("Classic", "Everyday", "Premium", "Essential", "Heritage", "Modern", "Lightweight", "Relaxed")
EXTRA_TAGS = ("new", "sale", "bestseller", "eco", "limited")
REVIEW_TEXT = (
    (5, "Love it", "Exactly as described and arrived quickly."),
    (4, "Very good", "Good quality for the price; runs slightly small."),
    (3, "Okay", "Does the job, but the finish could be better."),
    (5, "Excellent", "Second one I bought. Highly recommended."),
    (2, "Disappointing", "The colour was different from the pictures."),
    (4, "Solid", "Well made, I would buy it again."),
)


async def _bulk(session: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT ... ON CONFLICT DO NOTHING (existing rows are left as they are)."""
    if rows:
        await session.execute(insert(table).on_conflict_do_nothing(), rows)


def _id(kind: str, natural_key: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{kind}:{natural_key}")


def _slugify(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def _catalog(n_products: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Every demo row, keyed by table, from ``seed`` alone."""
    rng = random.Random(seed)
    rows: dict[str, list[dict[str, Any]]] = {
        "categories": [],
        "products": [],
        "product_categories": [],
        "product_tags": [],
        "product_variants": [],
        "inventory": [],
        "product_images": [],
        "reviews": [],
    }
    positions: dict[str | None, int] = {}
    for slug, name, parent in TREE:
        positions[parent] = positions.get(parent, 0) + 1
        rows["categories"].append(
            {
                "id": _id("category", slug),
                "parent_id": _id("category", parent) if parent else None,
                "slug": slug,
                "name": name,
                "position": positions[parent],
            }
        )
    leaves = list(LEAVES)
    for i in range(n_products):
        leaf = leaves[i % len(leaves)]
        kind = LEAVES[leaf]
        sku = f"{SKU_PREFIX}{i + 1:05d}"
        pid = _id("product", sku)
        brand = rng.choice(kind.brands)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(kind.materials)} {rng.choice(kind.nouns)}"
        price = rng.randrange(kind.price[0], kind.price[1] + 1, 100) - 1  # 29.99-style prices
        weight = rng.randint(*kind.weight)
        rows["products"].append(
            {
                "id": pid,
                "sku": sku,
                "slug": f"{_slugify(name)}-{i + 1:05d}",
                "name": name,
                "description": (
                    f"{name} by {brand}. Made of {rng.choice(kind.materials).lower()} "
                    f"and built to last; a {rng.choice(('favourite', 'staple', 'best seller'))} "
                    f"in our {leaf.replace('-', ' ')} range."
                ),
                "brand": brand,
                "status": ProductStatus.DRAFT.value if i % 37 == 36 else ProductStatus.ACTIVE.value,
                "price_amount": price,
                "currency": CURRENCY,
                "weight_grams": weight,
                "created_at": EPOCH + timedelta(hours=i),
                "updated_at": EPOCH + timedelta(hours=i),
            }
        )
        rows["product_categories"].append({"product_id": pid, "category_id": _id("category", leaf)})
        tags = set(kind.tags) | set(rng.sample(EXTRA_TAGS, rng.randint(0, 2)))
        rows["product_tags"].extend({"product_id": pid, "tag": t} for t in sorted(tags))
        dims = [
            [("size", s) for s in kind.sizes] if kind.sizes else [],
            [("color", c) for c in rng.sample(kind.colors, min(len(kind.colors), rng.randint(1, 3)))],
        ]
        combos = [dict(c) for c in itertools.product(*[d for d in dims if d])]
        chosen = combos[: rng.randint(1, min(6, len(combos)))]
        variant_ids = []
        for n, options in enumerate(chosen, start=1):
            vsku = f"{sku}-{n:02d}"
            vid = _id("variant", vsku)
            variant_ids.append(vid)
            bigger = options.get("size") in ("XXL", "king", "4-person", "heavy", "28 cm")
            rows["product_variants"].append(
                {
                    "id": vid,
                    "product_id": pid,
                    "sku": vsku,
                    "options": options,
                    "price_amount": price + 500 if bigger else None,
                    "currency": CURRENCY if bigger else None,
                    "weight_grams": None,
                    "is_active": True,
                }
            )
            on_hand = 0 if rng.random() < 0.1 else rng.randint(1, 120)
            rows["inventory"].append({"variant_id": vid, "on_hand": on_hand})
        for n in range(1, rng.randint(1, 3) + 1):
            rows["product_images"].append(
                {
                    "id": _id("image", f"{sku}/{n}"),
                    "product_id": pid,
                    "variant_id": variant_ids[n - 1] if n <= len(variant_ids) and n > 1 else None,
                    "url": f"https://example.com/images/demo/{sku.lower()}-{n}.jpg",
                    "alt": f"{name}, view {n}",
                    "position": n - 1,
                }
            )
        if i % 5 == 0:
            for k in range(rng.randint(1, 4)):
                rating, title, body = rng.choice(REVIEW_TEXT)
                rows["reviews"].append(
                    {
                        "id": _id("review", f"{sku}/{k}"),
                        "product_id": pid,
                        "user_id": _id("user", f"demo-shopper-{k}"),
                        "order_id": None,
                        "rating": rating,
                        "title": title,
                        "body": body,
                    }
                )
    return rows


async def load_demo_catalog(
    session: AsyncSession, *, products: int = 300, seed: int = 42
) -> DemoCatalogSummary:
    """Load (or top up) the demo catalog in the caller's transaction; idempotent and deterministic."""
    if not 1 <= products <= 99_999:
        raise ValueError("products must be between 1 and 99999")
    data = _catalog(products, seed)
    # Two loaders at once would race on the same natural keys: take turns.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('product.demo_catalog', 0))"))

    await _bulk(session, categories, data["categories"])
    created = (
        await session.execute(
            insert(product_table).on_conflict_do_nothing().returning(product_table.c.id), data["products"]
        )
    ).all()
    skus = [r["sku"] for r in data["products"]]
    # Products that exist under another id (same SKU loaded differently) keep theirs; a slug clash skips one.
    found = await session.execute(
        select(product_table.c.sku, product_table.c.id).where(product_table.c.sku.in_(skus))
    )
    actual = {r.sku: r.id for r in found}
    remap = {r["id"]: actual[r["sku"]] for r in data["products"] if r["sku"] in actual}

    def owned(table_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "product_id": remap[r["product_id"]]} for r in table_rows if r["product_id"] in remap]

    category_ids = {r.slug: r.id for r in await session.execute(select(categories.c.slug, categories.c.id))}
    by_demo_id = {r["id"]: r["slug"] for r in data["categories"]}
    links = [
        {**r, "category_id": category_ids[by_demo_id[r["category_id"]]]}
        for r in owned(data["product_categories"])
        if by_demo_id[r["category_id"]] in category_ids
    ]
    await _bulk(session, product_categories, links)
    await _bulk(session, product_tags, owned(data["product_tags"]))
    await _bulk(session, product_variants, owned(data["product_variants"]))
    vskus = [r["sku"] for r in data["product_variants"]]
    vfound = await session.execute(
        select(product_variants.c.sku, product_variants.c.id).where(product_variants.c.sku.in_(vskus))
    )
    vactual = {r.sku: r.id for r in vfound}
    vremap = {r["id"]: vactual[r["sku"]] for r in data["product_variants"] if r["sku"] in vactual}
    await _bulk(
        session,
        inventory,
        [
            {**r, "variant_id": vremap[r["variant_id"]]}
            for r in data["inventory"]
            if r["variant_id"] in vremap
        ],
    )
    images = [
        {**r, "variant_id": vremap.get(r["variant_id"]) if r["variant_id"] else None}
        for r in owned(data["product_images"])
    ]
    await _bulk(session, product_images, images)
    await _bulk(session, reviews, owned(data["reviews"]))
    reviewed = sorted({remap[r["product_id"]] for r in data["reviews"] if r["product_id"] in remap})
    if reviewed:
        await session.execute(
            text(
                "UPDATE products p SET rating_avg = s.avg, rating_count = s.n FROM ("
                " SELECT product_id, round(avg(rating), 2) AS avg, count(*) AS n FROM reviews"
                " WHERE status = 'published' AND product_id = ANY(:ids) GROUP BY product_id) s"
                " WHERE p.id = s.product_id"
            ),
            {"ids": reviewed},
        )

    product_ids = list(remap.values())

    async def count(table: Any, cond: Any) -> int:
        return int((await session.execute(select(func.count()).select_from(table).where(cond))).scalar_one())

    return DemoCatalogSummary(
        categories=await count(categories, categories.c.slug.in_([c[0] for c in TREE])),
        products=len(product_ids),
        variants=await count(product_variants, product_variants.c.product_id.in_(product_ids)),
        images=await count(product_images, product_images.c.product_id.in_(product_ids)),
        tags=await count(product_tags, product_tags.c.product_id.in_(product_ids)),
        reviews=await count(reviews, reviews.c.product_id.in_(product_ids)),
        created_products=len(created),
    )
