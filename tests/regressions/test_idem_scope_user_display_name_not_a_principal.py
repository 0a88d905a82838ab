"""Regression: ``scope_user_resolver()`` took a user's ``display_name`` for the principal of its idempotency scope.

A display name is chosen by the user and is not unique ("Alex", "Support"); spec §2.4 wants the principal to be an
identity the auth layer verified. A user class implementing neither ``identity`` nor ``username`` fell back to
``display_name``, so two users with the same display name and the same key shared one scope: the second got the
first's stored response replayed (another user's payment, a cross-user disclosure breaking G3) and its own request
never ran. The fallback is gone: the principal is ``identity``, then ``username``; a user with neither has no
principal and gets what spec §2.4 gives a request without one (401 ``idempotency-principal-required``, or the shared
anonymous scope with its UUIDv4 keys when ``allow_anonymous=True``).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stalwart.idempotency import IdempotencyConfig, IdempotencyMiddleware, MemoryStore, scope_user_resolver

SECRET = b"s" * 32


class DisplayNamedUser(BaseUser):
    """A user whose class implements only ``display_name`` (its unique id lives in an attribute of its own)."""

    def __init__(self, user_id: int, display_name: str) -> None:
        self.user_id = user_id
        self._display_name = display_name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self._display_name


class Backend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        token = conn.headers.get("authorization", "")
        user_id = int(token.removeprefix("Bearer ") or 0)
        return AuthCredentials(["authenticated"]), DisplayNamedUser(user_id, "Alex")


def test_a_display_name_is_not_a_principal() -> None:
    assert scope_user_resolver()({"user": DisplayNamedUser(1, "Alex")}) is None


def app_for(runs: list[int], config: IdempotencyConfig | None = None) -> Starlette:
    async def charge(request: Request) -> Response:
        runs.append(request.user.user_id)
        return JSONResponse({"charged_user": request.user.user_id}, status_code=201)

    return Starlette(
        routes=[Route("/payments", charge, methods=["POST"])],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=Backend()),
            Middleware(
                IdempotencyMiddleware,
                store=MemoryStore(),
                resolver=scope_user_resolver(),
                secret=SECRET,
                config=config,
            ),
        ],
    )


async def test_two_users_sharing_a_display_name_never_share_a_scope() -> None:
    runs: list[int] = []
    app = app_for(runs)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        first = await client.post("/payments", headers={"authorization": "Bearer 1", "idempotency-key": "k"})
        other = await client.post("/payments", headers={"authorization": "Bearer 2", "idempotency-key": "k"})
    # No verified principal: the spec's answer to a request without one, for both; nothing replayed across users.
    assert (first.status_code, other.status_code) == (401, 401)
    assert first.json()["type"].endswith("idempotency-principal-required")
    assert "charged_user" not in other.text
    assert runs == []


@pytest.mark.parametrize("same_key", [True, False])
async def test_with_allow_anonymous_such_users_get_the_anonymous_scope(same_key: bool) -> None:
    runs: list[int] = []
    app = app_for(runs, IdempotencyConfig(allow_anonymous=True))
    key = str(uuid.uuid4())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        guessable = await client.post("/payments", headers={"authorization": "Bearer 1", "idempotency-key": "k"})
        first = await client.post("/payments", headers={"authorization": "Bearer 1", "idempotency-key": key})
        other_key = key if same_key else str(uuid.uuid4())
        other = await client.post("/payments", headers={"authorization": "Bearer 2", "idempotency-key": other_key})
    assert guessable.status_code == 400  # the anonymous scope takes only random UUIDs
    assert first.status_code == 201
    assert other.status_code == 201
    # Anyone holding an anonymous key can read its replay (documented); a different key runs its own request.
    assert runs == ([1] if same_key else [1, 2])
