import stalwart


def test_all_is_sorted_and_importable() -> None:
    assert list(stalwart.__all__) == sorted(stalwart.__all__)
    for name in stalwart.__all__:
        assert hasattr(stalwart, name), name


def test_no_stray_public_names() -> None:
    # `from __future__ import annotations` once leaked `annotations` into dir(stalwart)
    public = {name for name in dir(stalwart) if not name.startswith("_")}
    submodules = {"httpx", "idempotency", "asgi", "redis", "instrumentation", "testing", "cli", "pytest_plugin"}
    assert public - set(stalwart.__all__) - submodules == set()
