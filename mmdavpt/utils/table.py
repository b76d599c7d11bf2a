"""Plain-text tables for the tools' reports."""
from typing import List, Sequence

FORMATS = ('md', 'csv')


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, fmt: str = 'md') -> str:
    """A markdown table (columns padded to their widest cell) or CSV lines.

    Args:
        header: the column titles.
        rows: the cells of each row, as strings, one per column.
        fmt: ``'md'`` or ``'csv'``.
    """
    if fmt not in FORMATS:
        raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
    lines: List[Sequence[str]] = [list(header), *rows]
    if any(len(line) != len(header) for line in lines):
        raise ValueError(f'every row needs {len(header)} cells (the header has {len(header)})')
    if fmt == 'csv':
        return '\n'.join(','.join(line) for line in lines)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ['| ' + ' | '.join(h.ljust(w) for h, w in zip(header, widths)) + ' |',
           '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    out += ['| ' + ' | '.join(c.ljust(w) for c, w in zip(line, widths)) + ' |' for line in rows]
    return '\n'.join(out)
