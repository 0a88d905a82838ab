"""Who a request belongs to: the scope resolver contract (spec §2.4) and two ready-made resolvers.

The resolver runs on the ASGI scope *after authentication* and must return only identities the auth layer has
verified: decoding an unverified token to pick a principal lets an attacker choose someone else's scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["Identity", "Resolver", "scope_user_resolver", "state_resolver"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified identity: the scope of a request's idempotency keys.

    Attributes:
        principal: the authenticated user or client id (``str``); None or ``""`` means anonymous.
        tenant: the tenant (organisation, account) the principal acts for (``str``); default ``"default"``.

    Raises:
        TypeError: ``principal`` is neither a ``str`` nor None, or ``tenant`` is not a ``str`` (the message names the
            field). Convert ids first: ``Identity(str(user.id))``.
    """

    principal: str | None
    tenant: str = "default"

    def __post_init__(self) -> None:
        if self.principal is not None and not isinstance(self.principal, str):
            raise TypeError(f"Identity principal must be a str or None, got {type(self.principal).__name__}")
        if not isinstance(self.tenant, str):
            raise TypeError(f"Identity tenant must be a str, got {type(self.tenant).__name__}")


Resolver: TypeAlias = Callable[[MutableMapping[str, Any]], "Identity | Awaitable[Identity | None] | None"]
"""``(asgi_scope) -> Identity | None``, sync or async (detected once, at construction, with ``is_async_callable``:
also behind a plain decorator or as an object's async ``__call__``); an awaitable returned by a resolver taken for
sync (a lambda returning a coroutine) is awaited too. A resolver that raises, or returns anything but an
``Identity`` with string fields or None, has failed: the middleware answers 401 on every route (spec §2.8 step 3)."""


def scope_user_resolver(*, tenant: str = "default") -> Callable[[MutableMapping[str, Any]], Identity | None]:
    """A resolver reading ``scope["user"]`` as set by Starlette's ``AuthenticationMiddleware``.

    The user must have ``is_authenticated`` true; its ``identity``, or else its ``username``, is the principal.
    ``display_name`` is never used: it is chosen by the user and not unique, and two users sharing one would share
    a scope (one replaying the other's response). A user with neither ``identity`` nor ``username`` has no principal:
    the middleware answers 401 ``idempotency-principal-required``, or, on a route with ``allow_anonymous=True``,
    serves it in the shared anonymous scope (UUIDv4 keys only). An attribute the user class leaves unimplemented
    (``BaseUser`` declares ``identity`` as a property raising ``NotImplementedError``; Starlette's ``SimpleUser`` did
    not implement it before its recent versions) counts as absent. ``tenant`` is fixed.
    """

    def resolve(scope: MutableMapping[str, Any]) -> Identity | None:
        user = scope.get("user")
        if user is None or not _user_attribute(user, "is_authenticated"):
            return None
        for attribute in ("identity", "username"):  # never display_name: not unique
            value = _user_attribute(user, attribute)
            if isinstance(value, str) and value:
                return Identity(value, tenant)
        return None

    return resolve


def _user_attribute(user: Any, name: str) -> Any:
    """``getattr(user, name, None)``, also None for a property the user class leaves unimplemented."""
    try:
        return getattr(user, name, None)
    except NotImplementedError:
        return None


def state_resolver(
    *, principal: str = "principal", tenant: str | None = "tenant"
) -> Callable[[MutableMapping[str, Any]], Identity | None]:
    """A resolver reading ``scope["state"][principal]`` (and ``[tenant]``) set by the app's own auth middleware."""

    def resolve(scope: MutableMapping[str, Any]) -> Identity | None:
        state = scope.get("state") or {}
        who = state.get(principal)
        if not isinstance(who, str) or not who:
            return None
        org = state.get(tenant) if tenant is not None else None
        return Identity(who, org if isinstance(org, str) and org else "default")

    return resolve
