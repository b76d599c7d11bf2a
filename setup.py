from setuptools import find_packages, setup

setup(
    name='mmdavpt',
    version='0.1.0',
    description='DA-VPT (Distribution-Aware Visual Prompt Tuning, CVPR 2025) for MMSegmentation '
    'and MMPretrain',
    packages=find_packages(include=['mmdavpt', 'mmdavpt.*', 'mmdavpt_lab', 'mmdavpt_lab.*']),
    package_data={'mmdavpt_lab': ['paper_results.json']},
    python_requires='>=3.8',
    install_requires=[
        'torch', 'mmengine>=0.10.0', 'mmcv>=2.0.0,<2.2.0', 'mmsegmentation>=1.2.0',
        'mmpretrain>=1.2.0', 'scikit-learn', 'threadpoolctl', 'numpy'
    ],
)
