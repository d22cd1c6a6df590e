"""graphql-codegen, as README tells front-end developers to run it: `npm ci`, then
`npm run codegen`, installs without a warning on this machine's Node and writes the types.

Runs in a copy of the files it reads, so the project's own folder is left as it was.
Needs node, npm and the npm registry (or npm's cache); skipped without them.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import PROJECT_ROOT

NPM = shutil.which("npm")
FILES = ["package.json", "package-lock.json", "codegen.ts", "schema.graphql"]
OPERATIONS = Path("backend/static/client/operations.js")
OFFLINE = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|ENETUNREACH")


def npm(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NPM, *args], cwd=folder, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.skipif(NPM is None or shutil.which("node") is None, reason="needs node and npm")
def test_codegen_installs_clean_and_writes_the_operations_types(tmp_path):
    for name in FILES:
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    (tmp_path / OPERATIONS).parent.mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / OPERATIONS, tmp_path / OPERATIONS)

    installed = npm(tmp_path, "ci", "--prefer-offline", "--no-audit", "--no-fund")
    output = installed.stdout + installed.stderr
    if installed.returncode != 0 and OFFLINE.search(output):
        pytest.skip(f"the npm registry cannot be reached: {OFFLINE.search(output)[0]}")
    assert installed.returncode == 0, output
    assert "EBADENGINE" not in output and "npm warn" not in output.lower(), output

    generated = npm(tmp_path, "run", "codegen")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = (tmp_path / "generated" / "graphql.ts").read_text()
    for name in ("SendCodeMutation", "SendCodeMutationVariables", "MeQuery", "UserErrorCode"):
        assert f"export type {name} " in types, name
