"""Writes src/shoal_client/_sync.py from src/shoal_client/_async.py (the one written by
hand), so the sync and async clients cannot drift apart. tests/test_generated.py checks
that the committed _sync.py is what this script makes.

    python scripts/unasync.py           # rewrite _sync.py
    python scripts/unasync.py --check   # exit 1 if _sync.py is stale
"""

import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent.parent / 'src' / 'shoal_client'

# Order matters: longer, more specific rewrites first.
REPLACE = [
    ('"""The asynchronous client: ``AsyncClient`` (admin API and invoke) and ``AsyncChannel`` (one\n'
     'HTTP channel). ``_sync.py`` is generated from this file by ``scripts/unasync.py``: edit here."""',
     '"""The synchronous client: ``Client`` (admin API and invoke) and ``Channel`` (one HTTP\n'
     'channel). Generated from ``_async.py`` by ``scripts/unasync.py``: do not edit."""'),
    ('>>> async with AsyncClient(', '>>> with Client('),
    ("(await shoal.invoke('hello.say-hello', {'name': 'you'})).json()",
     "shoal.invoke('hello.say-hello', {'name': 'you'}).json()"),
    ('async def __aenter__', 'def __enter__'),
    ('async def __aexit__', 'def __exit__'),
    ('await self._http.aclose()', 'self._http.close()'),
    ('httpx.AsyncBaseTransport', 'httpx.BaseTransport'),
    ('httpx.AsyncClient(', 'httpx.Client('),
    ('await asyncio.sleep(', 'time.sleep('),
    ('import asyncio\n', 'import time\n'),
    ('async def ', 'def '),
    ('await ', ''),
]


def render(source: str) -> str:
    out = source
    for a, b in REPLACE:
        out = out.replace(a, b)
    # AsyncClient -> Client, AsyncChannel -> Channel, ... (not httpx's, already done)
    out = re.sub(r'\bAsync([A-Z]\w*)', r'\1', out)
    return out


def main() -> int:
    want = render((HERE / '_async.py').read_text())
    target = HERE / '_sync.py'
    if '--check' in sys.argv[1:]:
        if target.read_text() != want:
            print('src/shoal_client/_sync.py is stale: run python scripts/unasync.py', file=sys.stderr)
            return 1
        return 0
    target.write_text(want)
    return 0


if __name__ == '__main__':
    sys.exit(main())
