"""Test-wide setup: the state that importing mmdavpt sets up, made explicit."""
import torch

from mmdavpt.utils import register_mmengine_safe_globals

register_mmengine_safe_globals()
torch.set_num_threads(2)
