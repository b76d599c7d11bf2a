"""The CUDA generator in ``RNGStateHook``'s state, on the CPU (CUDA's generator calls replaced)."""
import io

import torch

from mmdavpt.engine.hooks.rng_state_hook import get_rng_state, set_rng_state


def test_cuda_generator_state_is_saved_and_restored(monkeypatch):
    cuda_state = torch.arange(16, dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_rng_state', lambda: cuda_state.clone())
    monkeypatch.setattr(torch.cuda, 'set_rng_state', restored.append)
    state = get_rng_state()
    assert torch.equal(state['cuda'], cuda_state)
    buffer = io.BytesIO()
    torch.save(state, buffer)  # as in a checkpoint, read back in safe mode
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert len(restored) == 1 and torch.equal(restored[0], cuda_state)


def test_no_cuda_state_without_an_initialised_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: False)
    state = get_rng_state()
    assert 'cuda' not in state
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda s: (_ for _ in ()).throw(
        AssertionError('no CUDA state to restore')))
    set_rng_state(state)
