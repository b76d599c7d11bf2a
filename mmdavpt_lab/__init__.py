"""mmdavpt_lab: the experiments *about* mmdavpt, beside the package.

Comparisons over seeds with their statistics (``compare``, ``run``, ``attention``), timing with
its spread (``timing``: ratio intervals and verdicts of the benchmark), the offline
demo-data builder (``demo_data``), the official-config translator (``official_config``) and the
hyper-parameter search (``search``). The lab imports :mod:`mmdavpt`; :mod:`mmdavpt` never imports
the lab. Its extra dependencies are the ``lab`` extra of ``setup.py``.
"""
