#!/usr/bin/python3
"""Every software prefetch written in src/ is in the built library.

GCC 12 at -O2 dropped the prefetch loops of depthwise.c and
conv_pool_backward.c, each in a static function of its own, and nothing
noticed: the kernels ran without them (the same loop in the caller's body
is kept).
This reads the objects of a build (default: build/, compiled with -g), maps
each prefetch instruction to its source lines (addr2line -i), and fails naming
every `_mm_prefetch` / `__builtin_prefetch` call of src/ that has none.

usage: check_prefetch.py [BUILD_DIR [ROOT]]   (ROOT: the tree holding src/,
the repository by default; BUILD_DIR relative to it)
"""
import pathlib
import re
import subprocess
import sys

CALL = re.compile(r'\b(_mm_prefetch|__builtin_prefetch)\s*\(')
LINE = re.compile(r'^(/\S+\.[ch]):(\d+)')


def calls(src):
    """(path, line) of each prefetch call in the C sources under src."""
    found = set()
    for path in sorted(src.glob('*/*.c')):
        for n, text in enumerate(path.read_text().splitlines(), 1):
            if CALL.search(text.split('//')[0]):
                found.add((path.resolve(), n))
    return found


def emitted(obj):
    """(path, line) of each prefetch instruction in obj and of the calls it
    was inlined from (addr2line -i: _mm_prefetch itself is an inline
    function of the compiler's headers)."""
    found = set()
    for section in ('.text', '.text.unlikely', '.text.startup', '.text.hot'):
        dis = subprocess.run(['objdump', '-d', '--no-show-raw-insn', '-j', section, str(obj)],
                             capture_output=True, text=True).stdout
        addrs = [t.split(':')[0].strip() for t in dis.splitlines()
                 if re.match(r'^\s*[0-9a-f]+:\s+prefetch', t)]
        if not addrs:
            continue
        out = subprocess.run(['addr2line', '-i', '-j', section, '-e', str(obj)] + addrs,
                             capture_output=True, text=True, check=True).stdout
        for text in out.splitlines():
            m = LINE.match(text)
            if m:
                found.add((pathlib.Path(m.group(1)).resolve(), int(m.group(2))))
    return found


def main():
    root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else
                        pathlib.Path(__file__).resolve().parent.parent).resolve()
    build = root / (sys.argv[1] if len(sys.argv) > 1 else 'build')
    want = calls(root / 'src')
    have = set()
    for path in sorted({p for p, _ in want}):
        obj = build / path.relative_to(root).with_suffix('.o')
        if not obj.exists():
            print(f'check_prefetch: {obj} is missing (make lib first)', file=sys.stderr)
            return 1
        have |= emitted(obj)
    lost = sorted(want - have)
    for path, n in lost:
        print(f'{path.relative_to(root)}:{n}: prefetch compiled away (no instruction in the '
              'object; see scripts/check_prefetch.py)', file=sys.stderr)
    if not lost:
        print(f'check_prefetch: all {len(want)} prefetch calls are in the objects')
    return 1 if lost else 0


if __name__ == '__main__':
    sys.exit(main())
