"""Regression: ``scope_user_resolver()`` answered 401 to every user whose class leaves ``BaseUser.identity`` unset.

Starlette's ``BaseUser`` declares ``identity`` (like ``display_name``) as a property raising ``NotImplementedError``,
and Starlette's own ``SimpleUser`` did not implement it before its recent versions (Kludex/starlette discussion
#3270; ``starlette>=0.37`` is supported here), nor do many custom user classes. The resolver read the attribute with
``getattr(user, "identity", None)``, which only absorbs ``AttributeError``: the ``NotImplementedError`` escaped, the
middleware treated the failing resolver as "no principal", and every authenticated request with an Idempotency-Key
got 401 ``idempotency-principal-required``. An attribute the user class leaves unimplemented now counts as absent,
and the documented fallback (``username``) applies. (``display_name`` is not a fallback: it is not unique, see
test_idem_scope_user_display_name_not_a_principal.py.)
"""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart.idempotency import IdempotencyMiddleware, Identity, MemoryStore, scope_user_resolver

SECRET = b"s" * 32


class OldSimpleUser(BaseUser):
    """Starlette's ``SimpleUser`` as it was before it implemented ``identity``."""

    def __init__(self, username: str) -> None:
        self.username = username

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username


class NamedOnlyUser(BaseUser):
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return "Carol"


def test_an_unimplemented_identity_falls_back_to_the_username() -> None:
    resolve = scope_user_resolver(tenant="t")
    assert resolve({"user": OldSimpleUser("bob")}) == Identity("bob", "t")
    assert resolve({"user": NamedOnlyUser()}) is None  # a display name is not a verified principal


class Backend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if conn.headers.get("authorization") == "Bearer alice":
            return AuthCredentials(["authenticated"]), OldSimpleUser("alice")
        return None


async def test_an_authenticated_request_is_served_and_replayed() -> None:
    runs: list[str] = []

    async def charge(request: Request) -> Response:
        runs.append(request.user.display_name)
        return JSONResponse({"charge": len(runs)}, status_code=201)

    app = Starlette(
        routes=[Route("/payments", charge, methods=["POST"])],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=Backend()),
            Middleware(IdempotencyMiddleware, store=MemoryStore(), resolver=scope_user_resolver(), secret=SECRET),
        ],
    )
    headers = {"authorization": "Bearer alice", "idempotency-key": "key-1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        first = await client.post("/payments", headers=headers, content=b"{}")
        retry = await client.post("/payments", headers=headers, content=b"{}")
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.headers["idempotent-replayed"] == "true"
    assert runs == ["alice"]
