"""Shared fixtures: where the real records are, and a tiny tokenizer/model built here."""

import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_file(*parts):
    """Path of a file in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real records not available: {path} is missing (../shared/ is not beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch):
    # Nothing in a test may reach a model hub or wandb's servers.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("QA_VIA_MAKE", raising=False)  # set by the Makefile's recipes: messages then name make variables


@pytest.fixture
def one_thread():
    """One torch intra-op thread: on two shared cores ~10x faster for a tiny model than two contending ones."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny ALBERT QA model + WordPiece tokenizer trained on the real SQuAD subset."""
    pytest.importorskip("torch")
    import make_tiny_model

    path = shared_file("squad", "squad2-dev-normans-rhine.json")
    out = tmp_path_factory.mktemp("tiny-albert")
    return pathlib.Path(make_tiny_model.build(str(out), make_tiny_model.squad_texts(path), vocab_size=1500))


def pytest_collection_modifyitems(config, items):
    """The end-to-end tests (marked slow: real processes, a minute or two each) first, the others after in their
    order: `make test` runs the suite in 2 processes (pytest-xdist), which then end together on short tests instead
    of one waiting for the other's 2-minute `make demo`."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
