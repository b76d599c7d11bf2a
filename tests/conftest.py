"""Every test runs in a process where ``mmdavpt`` is imported, as the CLIs do: its modules are
registered and ``torch.load`` (safe mode) accepts the checkpoints mmengine writes."""
import torch

import mmdavpt  # noqa: F401

# One intra-op thread: the test models are tiny, and on a loaded 2-core machine a second thread
# makes them much slower, not faster.
torch.set_num_threads(1)
