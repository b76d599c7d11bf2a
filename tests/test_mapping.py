import numpy as np
import pytest
import torch

from mmdavpt.models import SemanticMapping

from conftest import class_features


def _mapped(C=12, M=3, seed=0, data_seed=0):
    m = SemanticMapping(C, M, 8, seed=seed)
    m.accumulate(*class_features(C, seed=data_seed))
    result = m.remap()
    return m, result


def test_kmeans_groups_similar_classes_and_is_deterministic():
    m, result = _mapped()
    c2p = m.class_to_prompt
    assert result.num_seen_classes == 12 and m.initialized
    for c in range(12):  # classes of one feature cluster share a prompt
        assert c2p[c] == c2p[c % 3]
    assert len(set(c2p.tolist())) == 3
    assert torch.equal(_mapped()[0].class_to_prompt, c2p)
    assert torch.equal(_mapped()[0].centroids, m.centroids)
    assert m.class_count.sum() == 0  # statistics reset after a remap


def test_fewer_classes_than_prompts_get_their_own_prompt():
    m = SemanticMapping(3, 5, 8)
    m.accumulate(*class_features(C=3))
    m.remap()
    assert m.class_to_prompt.tolist() == [0, 1, 2]


def test_unseen_classes_keep_their_prompt_and_warm_start():
    m, _ = _mapped()
    before = m.class_to_prompt.clone()
    feats, labels = class_features(seed=0)
    keep = labels < 9  # classes 9, 10, 11 are not seen this epoch
    m.accumulate(feats[keep] + 0.01, labels[keep])
    result = m.remap()
    assert result.num_seen_classes == 9 and result.moved_fraction == 0.0
    assert torch.equal(m.class_to_prompt, before)  # warm start keeps the prompt identities


def test_first_mapping_needs_enough_classes():
    m = SemanticMapping(12, 5, 8)
    feats, labels = class_features()
    keep = labels < 3
    m.accumulate(feats[keep], labels[keep])
    with pytest.raises(ValueError, match='only 3 of 12 classes'):
        m.remap()


def test_labels_out_of_range_raise():
    m = SemanticMapping(4, 2, 8)
    with pytest.raises(ValueError, match=r'\[0, 4\)'):
        m.accumulate(torch.randn(2, 8), torch.tensor([1, 4]))


def test_state_dict_round_trip_restores_the_mapping():
    m, _ = _mapped()
    m.accumulate(*class_features(seed=1))
    state = {k: v.clone() for k, v in m.state_dict().items()}
    assert {'class_to_prompt', 'centroids', 'class_sum', 'class_count', 'num_remaps'} <= set(state)
    fresh = SemanticMapping(12, 3, 8)
    assert not fresh.initialized
    fresh.load_state_dict(state)
    assert fresh.initialized
    for k, v in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    # the restored mapping continues exactly like the original
    m.remap()
    fresh.remap()
    assert torch.equal(m.class_to_prompt, fresh.class_to_prompt)
    np.testing.assert_allclose(m.centroids.numpy(), fresh.centroids.numpy())


def test_kmeans_runs_on_one_thread(monkeypatch):
    """C x D is tiny: BLAS/OpenMP thread pools only wait for each other
    (docs/reports/performance.md)."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_info
    seen = []
    fit = KMeans.fit

    def recording_fit(self, *args, **kwargs):
        seen.append({pool['user_api']: pool['num_threads'] for pool in threadpool_info()})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(KMeans, 'fit', recording_fit)
    m, _ = _mapped()
    m.accumulate(*class_features())
    m.remap()  # warm start
    assert len(seen) == 2 and all(set(pools.values()) == {1} for pools in seen), seen
