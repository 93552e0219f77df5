"""Test-session settings shared by the tests and the doctests."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _own_compile_cache(tmp_path_factory):
    """Every test run compiles into a cache of its own: concurrent runs never read each other's half-built
    entries, and the user's ~/.cache/graphgrad is left alone."""
    patch = pytest.MonkeyPatch()
    patch.setenv("GRAPHGRAD_CACHE", str(tmp_path_factory.mktemp("graphgrad-cache")))
    yield
    patch.undo()
