"""Save checkpoints without the frozen backbone weights (:mod:`mmdavpt.models.backbones.tuned_only`
holds the format, its fingerprint check and its loading)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdavpt.models.backbones import davpt_backbones, strip_to_tuned_only
from mmdavpt.registry import register_hook


@register_hook
class TunedOnlyCheckpointHook(Hook):
    """Drop the frozen backbone weights from every checkpoint the runner saves.

    A ViT-B DA-VPT checkpoint shrinks from ~330 MB to about a megabyte. Loading one (``load_from``,
    ``--resume``, ``tools/test.py``) puts the tuned tensors on top of the pre-trained backbone named
    in the config's ``init_cfg`` (:func:`~mmdavpt.models.backbones.tuned_only.load_tuned_only`),
    after checking that it is the backbone the checkpoint was trained on. Buffers (the class ->
    prompt mapping, BatchNorm statistics of heads) and every tensor outside the DAVPTViT backbone
    are kept.
    """

    priority = 'LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        strip_to_tuned_only(checkpoint, davpt_backbones(model))
