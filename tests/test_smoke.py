import stalwart


def test_all_is_sorted_and_importable() -> None:
    assert list(stalwart.__all__) == sorted(stalwart.__all__)
    for name in stalwart.__all__:
        assert hasattr(stalwart, name), name
