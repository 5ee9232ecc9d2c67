"""ER diagrams (Mermaid) and the index catalogue, generated from each service's SQLAlchemy metadata.

    python -m devstack erd     # rewrites docs/erd/*.md and the generated blocks of docs/database.md

One ``docs/erd/<service>.md`` per database (tables, columns with types, PK / FK / UK markers, the
foreign keys inside the database, partitioned tables, unique keys, ids that point into other
databases), ``docs/erd/index.md`` (every database as a group, the seed's cross-service reference map
as dotted "references (id, no FK)" links) and, in ``docs/database.md``, one block per database that
lists each index with the query path it serves - the comment written above it in ``models.py``.
``tests/platform/test_erd.py`` fails when a committed file differs from what this module generates.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from sqlalchemy import Column, ForeignKeyConstraint, Index, MetaData, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ClauseElement

from core.partitions import HASH_PARTITIONS, MONTHS_AHEAD
from core.registry import SERVICES, ServiceInfo, service
from core.settings import ROOT

ERD_DIR = ROOT / "docs" / "erd"
DATABASE_MD = ROOT / "docs" / "database.md"
REGENERATE = "python -m devstack erd"
_DIALECT = postgresql.dialect()


@dataclass(frozen=True)
class Reference:
    """An id column of one database that names a row of another database (no foreign key)."""

    from_service: str
    table: str
    column: str
    to_service: str
    to_table: str
    to_column: str = "id"

    @property
    def field(self) -> str:
        return f"{self.table}.{self.column}"


# The "Reference Map" of the seed (seed/database-architecture.md, "Cross-Service References"), row by
# row. "Order Service -> User Service: orders.user_id" points at the user's profile, whose key is the
# auth user id; "Return Service -> Payment Service: refunds.payment_id" is return_db's refunds table.
SEED_REFERENCE_MAP: tuple[Reference, ...] = (
    Reference("user", "user_profiles", "user_id", "auth", "users"),
    Reference("cart", "carts", "user_id", "auth", "users"),
    Reference("cart", "cart_items", "product_id", "product", "products"),
    Reference("order", "orders", "user_id", "user", "user_profiles", "user_id"),
    Reference("order", "order_items", "product_id", "product", "products"),
    Reference("order", "orders", "cart_id", "cart", "carts"),
    Reference("order", "orders", "coupon_code", "discount", "coupons", "code"),
    Reference("payment", "payments", "order_id", "order", "orders"),
    Reference("shipping", "shipments", "order_id", "order", "orders"),
    Reference("return", "return_requests", "order_id", "order", "orders"),
    Reference("return", "refunds", "payment_id", "payment", "payments"),
    Reference("user", "wishlist_items", "product_id", "product", "products"),
)

# "auth users.id", "order_db orders.id", "product_db product_variants.id" in a column comment
_COMMENT_REFERENCE = re.compile(
    r"\b(" + "|".join(s.name for s in SERVICES) + r")(?:_db)?\s+([a-z_]+)\.([a-z_]+)\b"
)


# --- reading the models -------------------------------------------------------------------------


def models_module(info: ServiceInfo) -> ModuleType:
    return importlib.import_module(f"services.{info.package}.models")


def metadata_of(info: ServiceInfo) -> MetaData:
    metadata = models_module(info).metadata
    assert isinstance(metadata, MetaData)
    return metadata


def tables_of(info: ServiceInfo) -> list[Table]:
    """The service's tables in the order models.py defines them (the ledger first)."""
    return list(metadata_of(info).tables.values())


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _constraint_name(node: ast.Call) -> str | None:
    for kw in node.keywords:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    if (
        _call_name(node) == "Index"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _comment_above(lines: Sequence[str], lineno: int) -> str:
    """The ``#`` comment lines right above source line ``lineno`` (1-based), joined."""
    found: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        found.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    if not found and i >= 0 and re.match(r"\s*Index\(.*\),\s*$", lines[i]):
        # the second of two one-line indexes under one comment ("# FK lookups")
        return _comment_above(lines, i + 1)
    return " ".join(found)


def index_comments(info: ServiceInfo) -> dict[str, str]:
    """Index / constraint name -> the comment written above it in the service's models.py."""
    source = inspect.getsource(models_module(info))
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _call_name(node) in ("Index", "UniqueConstraint"):
            name = _constraint_name(node)
            if name:
                found[name] = _comment_above(lines, node.lineno)
    return found


def partitioning(table: Table) -> str | None:
    value = table.dialect_options["postgresql"]["partition_by"]
    return str(value) if value else None


def partition_columns(table: Table) -> list[str]:
    spec = partitioning(table)
    if not spec:
        return []
    inside = spec[spec.index("(") + 1 : spec.rindex(")")]
    return [c.strip() for c in inside.split(",")]


def partition_note(table: Table) -> str:
    spec = partitioning(table) or ""
    columns = ", ".join(partition_columns(table))
    if spec.upper().startswith("HASH"):
        return (
            f"by hash of `{columns}`: {HASH_PARTITIONS} partitions "
            f"`{table.name}_p0` .. `{table.name}_p{HASH_PARTITIONS - 1}`"
        )
    return (
        f"by month (range on `{columns}`): partitions `{table.name}_pYYYY_MM`, created up to "
        f"{MONTHS_AHEAD} months ahead by the `partition-maintenance` schedule"
    )


def _is_partial(index: Index) -> bool:
    return index.dialect_options["postgresql"]["where"] is not None


def _expression_sql(expr: object) -> str:
    if isinstance(expr, Column):
        return str(expr.name)
    if isinstance(expr, ClauseElement):
        return str(expr.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))
    return str(expr)


def _index_columns(index: Index) -> list[str]:
    return [_expression_sql(e) for e in index.expressions]


def _columns_named(table: Table, expressions: Iterable[str]) -> set[str]:
    """Column names an index expression mentions (``lower(email)`` -> ``email``)."""
    names = set(table.columns.keys())
    return {w for e in expressions for w in re.findall(r"[a-z_][a-z0-9_]*", e) if w in names}


def _unique_constraints(table: Table) -> list[UniqueConstraint]:
    found = [c for c in table.constraints if isinstance(c, UniqueConstraint)]
    return sorted(found, key=lambda c: (str(c.name), [col.name for col in c.columns]))


def unique_keys(table: Table) -> list[tuple[str, list[str], str | None]]:
    """(name, columns or expressions, partial predicate) of every unique constraint and unique index."""
    keys: list[tuple[str, list[str], str | None]] = []
    for constraint in _unique_constraints(table):
        keys.append((str(constraint.name), [c.name for c in constraint.columns], None))
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if index.unique:
            where = index.dialect_options["postgresql"]["where"]
            keys.append(
                (
                    str(index.name),
                    _index_columns(index),
                    _expression_sql(where) if where is not None else None,
                )
            )
    return keys


def _unique_columns(table: Table) -> set[str]:
    """Columns that belong to a unique key valid for the whole table (not a partial index)."""
    found: set[str] = set()
    for _, columns, where in unique_keys(table):
        if where is None:
            found |= _columns_named(table, columns)
    return found


def _unique_column_sets(table: Table) -> list[set[str]]:
    sets = [{c.name for c in table.primary_key.columns}]
    sets += [_columns_named(table, cols) for _, cols, where in unique_keys(table) if where is None]
    return sets


def column_type(column: Column[object]) -> tuple[str, str]:
    """The Mermaid type word of a column, and a note when the word had to drop detail."""
    sql = str(column.type.compile(dialect=_DIALECT)).lower()
    sql = sql.replace("timestamp with time zone", "timestamptz").replace(" ", "")
    if "," in sql:  # numeric(3,2): Mermaid type words cannot hold a comma
        return sql.split("(")[0], sql
    return sql, ""


def cross_references(info: ServiceInfo) -> list[tuple[Reference, str]]:
    """Ids of this database that name rows of another: the seed's map, then the column comments."""
    found: dict[tuple[str, str], tuple[Reference, str]] = {}
    for ref in SEED_REFERENCE_MAP:
        if ref.from_service == info.name:
            found[(ref.table, ref.column)] = (ref, "seed reference map")
    for table in tables_of(info):
        for column in table.columns:
            match = _COMMENT_REFERENCE.search(column.comment or "")
            if match and match.group(1) != info.name and (table.name, column.name) not in found:
                ref = Reference(info.name, table.name, column.name, *match.groups())
                found[(table.name, column.name)] = (ref, "column comment")
    return list(found.values())


# --- rendering ------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    return text.replace('"', "'").replace("<", "(").replace(">", ")").replace("%", " percent")


def _generated_note(source: str) -> str:
    return f"<!-- Generated by `{REGENERATE}` from {source}. Do not edit by hand. -->"


def _entity(table: Table) -> list[str]:
    fk_columns = {fk.parent.name for fk in table.foreign_keys}
    unique = _unique_columns(table)
    part_cols = set(partition_columns(table))
    lines = [f"    {table.name} {{"]
    for column in table.columns:
        type_word, type_note = column_type(column)
        keys = [
            k
            for k, present in (
                ("PK", column.primary_key),
                ("FK", column.name in fk_columns),
                ("UK", column.name in unique and not column.primary_key),
            )
            if present
        ]
        notes = [
            n
            for n in (
                type_note,
                "partition key" if column.name in part_cols else "",
                "generated" if column.computed is not None else "",
                column.comment or "",
            )
            if n
        ]
        line = f"        {type_word} {column.name}"
        if keys:
            line += " " + ", ".join(keys)
        if notes:
            line += f' "{_mermaid_text("; ".join(notes))}"'
        lines.append(line)
    lines.append("    }")
    return lines


def _foreign_keys(table: Table) -> list[ForeignKeyConstraint]:
    """The table's foreign keys in a stable order (SQLAlchemy keeps them in a set)."""
    return sorted(
        table.foreign_key_constraints, key=lambda fk: (fk.referred_table.name, [c.name for c in fk.columns])
    )


def _relationships(table: Table) -> list[str]:
    lines = []
    unique_sets = _unique_column_sets(table)
    for fk in _foreign_keys(table):
        parent = fk.referred_table
        child_columns = [c.name for c in fk.columns]
        mandatory = all(not table.columns[c].nullable for c in child_columns)
        one_to_one = any(set(child_columns) == s for s in unique_sets)
        left = "||" if mandatory else "|o"
        right = "o|" if one_to_one else "o{"
        label = ", ".join(child_columns)
        lines.append(f'    {parent.name} {left}--{right} {table.name} : "{label}"')
    return lines


def render_service(info: ServiceInfo) -> str:
    tables = tables_of(info)
    source = f"services/{info.package}/models.py"
    out = [
        f"# {info.database}",
        "",
        _generated_note(source),
        "",
        f"The {info.name} service's database: {len(tables)} tables defined in `{source}`, reached only "
        f"as role `{info.role}`. Markers: PK primary key, FK foreign key (inside this database only), "
        "UK member of a unique key. Relationships are the foreign keys inside this database; ids of "
        "other databases are plain columns, listed below. Index by index, the query each one serves: "
        f"[docs/database.md](../database.md#{info.database}). All databases: [index](index.md).",
        "",
        "```mermaid",
        "erDiagram",
    ]
    for table in tables:
        out += _entity(table)
    for table in tables:
        out += _relationships(table)
    out += ["```", ""]

    partitioned = [t for t in tables if partitioning(t)]
    if partitioned:
        out += ["## Partitioned tables", "", "| table | partitioned | primary key |", "|---|---|---|"]
        for t in partitioned:
            pk = ", ".join(c.name for c in t.primary_key.columns)
            out.append(f"| `{t.name}` | {partition_note(t)} | `({pk})` |")
        out.append("")

    out += ["## Keys", "", "| table | primary key | unique keys |", "|---|---|---|"]
    for t in tables:
        pk = ", ".join(c.name for c in t.primary_key.columns)
        uniques = "<br>".join(
            f"`{name}` ({', '.join(cols)})" + (f" where `{where}`" if where else "")
            for name, cols, where in unique_keys(t)
        )
        out.append(f"| `{t.name}` | `({pk})` | {uniques or '-'} |")
    out.append("")

    refs = cross_references(info)
    out += ["## Ids of other databases (no foreign key)", ""]
    if refs:
        out += ["| column | names a row of | source |", "|---|---|---|"]
        for ref, origin in refs:
            target = service(ref.to_service).database
            out.append(f"| `{ref.field}` | {target} `{ref.to_table}.{ref.to_column}` | {origin} |")
    else:
        out.append("None: this database refers to no other.")
    out.append("")
    return "\n".join(out)


def _node(info: ServiceInfo, table: str) -> str:
    return f"{info.name}__{table}"


def render_index() -> str:
    out = [
        "# ER diagrams",
        "",
        _generated_note("the models of every service and the seed's reference map"),
        "",
        "Ten databases, one per service; no query and no foreign key spans two of them. Below, every "
        "database is a group of its tables: solid arrows are foreign keys inside a database (child to "
        "parent), dotted arrows are the seed's cross-service references, ids stored without a foreign "
        "key. Per database, with columns and keys:",
        "",
        "| database | tables | partitioned | diagram |",
        "|---|---|---|---|",
    ]
    for info in SERVICES:
        tables = tables_of(info)
        parts = ", ".join(
            f"`{t.name}` ({'hash' if (partitioning(t) or '').upper().startswith('HASH') else 'month'})"
            for t in tables
            if partitioning(t)
        )
        out.append(f"| {info.database} | {len(tables)} | {parts or '-'} | [{info.name}.md]({info.name}.md) |")
    out += ["", "```mermaid", "flowchart LR"]
    for info in SERVICES:
        out.append(f'    subgraph {info.database}["{info.database}"]')
        for table in tables_of(info):
            spec = partitioning(table)
            label = table.name
            if spec:
                kind = "hash" if spec.upper().startswith("HASH") else "month"
                label += f"<br/>partitioned by {kind}"
            out.append(f'        {_node(info, table.name)}["{label}"]')
        out.append("    end")
    for info in SERVICES:
        for table in tables_of(info):
            parents = {fk.referred_table.name for fk in _foreign_keys(table)} - {table.name}
            out += [f"    {_node(info, table.name)} --> {_node(info, parent)}" for parent in sorted(parents)]
    for ref in SEED_REFERENCE_MAP:
        source, target = service(ref.from_service), service(ref.to_service)
        out.append(
            f'    {_node(source, ref.table)} -.->|"{ref.field}: references (id, no FK)"| '
            f"{_node(target, ref.to_table)}"
        )
    out += [
        "```",
        "",
        "## The seed's reference map",
        "",
        "| from | field | to | target |",
        "|---|---|---|---|",
    ]
    for ref in SEED_REFERENCE_MAP:
        out.append(
            f"| {service(ref.from_service).database} | `{ref.field}` | {service(ref.to_service).database} "
            f"| `{ref.to_table}.{ref.to_column}` |"
        )
    extra = [
        (ref, origin)
        for info in SERVICES
        for ref, origin in cross_references(info)
        if origin != "seed reference map"
    ]
    out += [
        "",
        "## Further ids of other databases",
        "",
        "Declared in the models' column comments (not drawn above): the saga passes these ids between "
        "services; like the seed's references they carry no foreign key.",
        "",
        "| from | field | to | target |",
        "|---|---|---|---|",
    ]
    for ref, _ in extra:
        out.append(
            f"| {service(ref.from_service).database} | `{ref.field}` | {service(ref.to_service).database} "
            f"| `{ref.to_table}.{ref.to_column}` |"
        )
    out.append("")
    return "\n".join(out)


def render_index_catalogue(info: ServiceInfo) -> str:
    """The indexes of one database and the query path each serves (a block of docs/database.md)."""
    comments = index_comments(info)
    out = [
        _generated_note(f"services/{info.package}/models.py"),
        "",
        "| table | index | columns | serves |",
        "|---|---|---|---|",
    ]
    for table in tables_of(info):
        rows: list[tuple[str, str, str]] = []
        for constraint in _unique_constraints(table):
            name = str(constraint.name)
            cols = ", ".join(c.name for c in constraint.columns)
            rows.append((f"`{name}` (unique)", cols, comments.get(name) or "uniqueness"))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            name = str(index.name)
            kinds = [k for k, on in (("unique", index.unique), ("partial", _is_partial(index))) if on]
            using = index.dialect_options["postgresql"]["using"]
            if using:
                kinds.append(str(using))
            cols = ", ".join(_index_columns(index))
            where = index.dialect_options["postgresql"]["where"]
            if where is not None:
                cols += f" WHERE {_expression_sql(where)}"
            kind = f" ({', '.join(kinds)})" if kinds else ""
            rows.append(
                (f"`{name}`{kind}", cols, comments.get(name) or ("uniqueness" if index.unique else ""))
            )
        for name, cols, serves in rows:
            out.append(f"| `{table.name}` | {name} | `{cols}` | {serves.replace('|', '/')} |")
    return "\n".join(out)


def _markers(info: ServiceInfo) -> tuple[str, str]:
    return f"<!-- begin generated indexes: {info.name} -->", f"<!-- end generated indexes: {info.name} -->"


def update_database_md(text: str) -> str:
    """``text`` with each database's generated index block replaced by a fresh one."""
    for info in SERVICES:
        begin, end = _markers(info)
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"docs/database.md lacks the markers {begin} ... {end}")
        text = text[: start + len(begin)] + "\n" + render_index_catalogue(info) + "\n" + text[stop:]
    return text


def uncommented_indexes() -> list[str]:
    """Non-unique indexes without a comment saying which query they serve (a convention)."""
    missing = []
    for info in SERVICES:
        comments = index_comments(info)
        for table in tables_of(info):
            missing += [
                f"{info.name}: {i.name}"
                for i in table.indexes
                if not i.unique and not comments.get(str(i.name))
            ]
    return missing


def generate() -> dict[Path, str]:
    """Every generated file and the content it should have now."""
    files = {ERD_DIR / f"{info.name}.md": render_service(info) for info in SERVICES}
    files[ERD_DIR / "index.md"] = render_index()
    if DATABASE_MD.exists():
        files[DATABASE_MD] = update_database_md(DATABASE_MD.read_text())
    return files


def stale() -> list[Path]:
    """Generated files whose committed content differs from a fresh generation."""
    return [path for path, text in generate().items() if not path.exists() or path.read_text() != text]


def write() -> list[Path]:
    """Write the files that changed; return them."""
    changed = []
    for path, text in generate().items():
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(path)
    return changed
