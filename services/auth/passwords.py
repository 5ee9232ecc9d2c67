"""Password policy and argon2id hashing (argon2-cffi).

Parameters: argon2id, time_cost=3, memory_cost=64 MiB, parallelism=1, 16-byte salt, 32-byte hash.
RFC 9106 section 4 recommends argon2id with t=3 and m=64 MiB when 2 GiB per hash is too much; OWASP's
password storage cheat sheet asks for at least m=19 MiB, t=2, p=1, so this is comfortably above it.
parallelism=1 because a login server parallelises across requests, not within one hash: one lane
keeps the per-hash cost predictable on small machines (~50-100 ms of one core). Hashing runs on a
small dedicated thread pool (one thread per core) so it never blocks the event loop and the memory
in use stays bounded (threads x 64 MiB). When these parameters change, ``needs_rehash`` is true for
old hashes and the service re-hashes the password at the next successful login.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.auth.errors import WeakPassword

TIME_COST: Final = 3
MEMORY_COST_KIB: Final = 64 * 1024
PARALLELISM: Final = 1

T = TypeVar("T")

MIN_LENGTH: Final = 10
MAX_LENGTH: Final = 256  # bounds the hashing work an attacker can ask for

HASHER: Final = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="argon2")


def _char_class(char: str) -> str:
    if char.isdigit():
        return "digit"
    if char.islower():
        return "lower"
    if char.isupper():
        return "upper"
    return "other"


def check_policy(password: str) -> None:
    """Refuse passwords shorter than 10 characters or made of one character class only."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters long", min_length=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password must be at most {MAX_LENGTH} characters long", max_length=MAX_LENGTH)
    if len({_char_class(c) for c in password}) < 2:
        raise WeakPassword(
            "password must mix at least two kinds of characters "
            "(lowercase letters, uppercase letters, digits, symbols)"
        )


async def _run(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_executor(), fn)


async def hash_password(password: str, *, check: bool = True) -> str:
    """The argon2id PHC string of ``password``; checks the policy first unless ``check`` is false
    (re-hashing an existing password at login must not be refused by a newer policy)."""
    if check:
        check_policy(password)
    return await _run(functools.partial(HASHER.hash, password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    return await _run(functools.partial(_verify, password_hash, password))


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters (or another variant) than ``HASHER``'s."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def is_argon2id_hash(value: str) -> bool:
    return value.startswith("$argon2id$")


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


async def burn_verification(password: str) -> None:
    """Spend the time of one verification, so an unknown email costs as much as a wrong password."""
    dummy = await _run(_dummy_hash)
    await verify_password(dummy, password)
