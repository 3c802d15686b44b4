"""Generated code is what its generators make today: the sync client from the async one
(scripts/unasync.py) and the gRPC stubs from proto/ (scripts/gen_proto.py)."""

import filecmp
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_sync_client_is_generated_from_the_async_one():
    r = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'unasync.py'), '--check'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_grpc_stubs_match_the_protos(tmp_path):
    pytest.importorskip('grpc_tools')
    subprocess.run([sys.executable, str(ROOT / 'scripts' / 'gen_proto.py'), str(tmp_path)], check=True)
    committed = ROOT / 'src' / 'shoal_client' / '_proto'
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*') if p.is_file())
    have = sorted(p.relative_to(committed) for p in committed.rglob('*')
                  if p.is_file() and '__pycache__' not in p.parts)
    assert made == have
    for rel in made:
        assert filecmp.cmp(tmp_path / rel, committed / rel, shallow=False), '{} is stale: run scripts/gen_proto.py'.format(rel)
