"""Runs every ```python block of docs/client.md against the test cluster, in order, each
in a fresh namespace, with the cluster's addresses in the environment the client reads."""

import os
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[3] / 'docs' / 'client.md'
BLOCKS = re.findall(r'```python\n(.*?)```', DOC.read_text(), re.S)


@pytest.fixture
def docs_env(cluster, monkeypatch):
    monkeypatch.setenv('SHOAL_ADMIN_URL', cluster.admin_url)
    monkeypatch.setenv('SHOAL_CHANNEL_URL', cluster.http_url)
    monkeypatch.setenv('SHOAL_GRPC_ADDR', cluster.grpc_addr)
    monkeypatch.setenv('SHOAL_ADMIN_PASSWORD', cluster.password)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_docs_example(docs_env, index):
    code = compile(BLOCKS[index], '{}#example-{}'.format(DOC.name, index + 1), 'exec')
    exec(code, {'__name__': '__docs__'})
