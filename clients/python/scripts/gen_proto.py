"""Generates the gRPC message stubs of the public Invoker from the repository's proto/
into src/shoal_client/_proto (or OUT), with grpcio-tools (the version pinned in
pyproject's `dev` extra). tests/test_generated.py regenerates into a temporary folder
and fails when the committed stubs differ.

    python scripts/gen_proto.py [OUT]
"""

import pathlib
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = ROOT.parent.parent / 'proto'
FILES = ['shoal/invoker/v1/invoker.proto']


def generate(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    args = ['protoc', '-I', str(PROTO), '--python_out', str(out), '--pyi_out', str(out)]
    if protoc.main(args + [str(PROTO / f) for f in FILES]) != 0:
        raise SystemExit('protoc failed')
    # Packages, so that the stubs import as shoal_client._proto.shoal.invoker.v1.
    for f in FILES:
        d = out
        (d / '__init__.py').touch()
        for part in pathlib.Path(f).parent.parts:
            d = d / part
            (d / '__init__.py').touch()


if __name__ == '__main__':
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / 'src' / 'shoal_client' / '_proto')
