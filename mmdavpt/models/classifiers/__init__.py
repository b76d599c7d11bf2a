from .davpt_classifier import DAVPTImageClassifier

__all__ = ['DAVPTImageClassifier']
