import pytest
import torch

# CI has two cores; tiny models gain nothing from more threads and lose to contention.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
