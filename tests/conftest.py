"""Every test runs in a process where ``mmdavpt`` is imported, as the CLIs do: its modules are
registered and ``torch.load`` (safe mode) accepts the checkpoints mmengine writes."""
import mmdavpt  # noqa: F401
