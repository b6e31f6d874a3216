"""Progress bars for long loops (tqdm, which transformers already depends on)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from tqdm.auto import tqdm


@contextmanager
def progress_bar(total: int, desc: str) -> Iterator[tqdm]:
    """A bar on stderr; silent when stderr is not a terminal and nothing asked for it."""
    bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
