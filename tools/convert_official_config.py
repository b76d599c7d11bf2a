"""Translate a config of the official DA-VPT code into an mmdavpt config.

Example::

    python tools/convert_official_config.py DA-VPT/configs/vtab/vitb_cifar100.yaml \
        -o configs/official/vit-b16-in21k_davpt-official_vtab-cifar.py

Reads the official yaml with the official loader's rules (its files are not valid YAML), prints
the report (what became which option, the keys the official loader silently ignores, what this
config cannot reproduce) and writes the MMEngine config, the report as its header. Without
``-o`` the config is printed, its ``_base_`` paths relative to the current folder. An existing
output file is never overwritten unless ``--force`` is given, and the input never, not even with
``--force`` (compared by real path: a link or another spelling of the input is the input); the
output is written through a temporary file. docs/official_recipe.md explains every mapping.
"""
import argparse
import sys
from pathlib import Path

from mmdavpt.utils.io import atomic_write, check_output_path
from mmdavpt_lab.official_config import format_config, translate_official_config

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('official', help='official DA-VPT config (configs/{fgvc,vtab}/*.yaml)')
    parser.add_argument('-o', '--out', help='write the mmdavpt config here (.py)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing --out file')
    parser.add_argument('--num-classes', type=int,
                        help='number of classes, for a dataset that is not one of ours')
    args = parser.parse_args(argv)

    official = Path(args.official)
    if not official.is_file():
        parser.error(f'{official} is not a file')
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.suffix != '.py':
            parser.error(f'--out must be a .py config file, got {out}')
        try:  # the input, even with --force, and without it an existing file, are refused
            check_output_path(out, sources=(official, ), force=args.force)
        except (ValueError, FileExistsError) as e:
            parser.error(str(e))
    cfg, report = translate_official_config(official.read_text(encoding='utf-8'),
                                            num_classes=args.num_classes)
    text = format_config(cfg, report, config_dir=(out.parent if out else Path.cwd()).resolve(),
                         repo_root=REPO, source=official.name)
    if out is None:
        sys.stdout.write(text)
        return 0
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding='utf-8'))
    print(report.format())
    print(f'written: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
