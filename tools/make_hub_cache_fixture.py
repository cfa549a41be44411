"""Writes test/fixtures/hub-cache/: a Hugging Face cache made by Python's huggingface_hub itself.

The cache is what `huggingface_hub.snapshot_download` leaves behind (blobs/, snapshots/{commit}/ symlinks, refs/main,
and whatever else the installed version adds), so test/hub-cli.test.ts can check that Scalpel reads a transformers
user's cache without downloading anything. No machine here reaches the real Hub: the tool starts the tests' own Hub
stand-in on 127.0.0.1 (test/support/hub-server.ts, serving test/fixtures/models/llama as test-org/tiny-llama) and
points HF_ENDPOINT at it, so the commit hash and blob names are the ones that server gives to the tests.

Needs `npm run build` first (for dist/test/support/hub-server.js) and huggingface_hub:
    python3 -m venv .venv && .venv/bin/pip install huggingface_hub
    .venv/bin/python tools/make_hub_cache_fixture.py
`npm test` never runs this; it reads the committed result.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPO = "test-org/tiny-llama"
MODEL = "test/fixtures/models/llama"
OUT = ROOT / "test" / "fixtures" / "hub-cache"


def main() -> None:
    server_js = ROOT / "dist" / "test" / "support" / "hub-server.js"
    if not server_js.exists():
        sys.exit(f"{server_js}: missing; run `npm run build` first")
    server = subprocess.Popen(
        ["node", str(server_js), f"{REPO}={MODEL}"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        endpoint = server.stdout.readline().strip()
        if not endpoint.startswith("http://127.0.0.1:"):
            sys.exit(f"hub-server.js printed {endpoint!r}, expected its http://127.0.0.1:PORT address")
        with tempfile.TemporaryDirectory() as cache:
            # huggingface_hub reads its settings when it is imported, so they are set first.
            os.environ.update(
                HF_ENDPOINT=endpoint,
                HF_HUB_CACHE=cache,
                HF_HUB_DISABLE_TELEMETRY="1",
                HF_HUB_DISABLE_PROGRESS_BARS="1",
            )
            os.environ.pop("HF_TOKEN", None)
            import huggingface_hub
            from huggingface_hub import snapshot_download

            snapshot = snapshot_download(REPO)
            print(f"huggingface_hub {huggingface_hub.__version__}: {snapshot}")
            if OUT.exists():
                shutil.rmtree(OUT)
            OUT.mkdir(parents=True)
            folder = "models--" + REPO.replace("/", "--")
            # symlinks=True keeps the snapshot's relative links to ../../blobs as huggingface_hub wrote them; the
            # .locks folder is huggingface_hub's run-time state, not part of the layout.
            shutil.copytree(Path(cache) / folder, OUT / folder, symlinks=True)
            (OUT / "VERSION").write_text(f"huggingface_hub {huggingface_hub.__version__}\n")
    finally:
        server.kill()
        server.wait()
    for p in sorted(OUT.rglob("*")):
        print(p.relative_to(ROOT), "->", os.readlink(p) if p.is_symlink() else "")


if __name__ == "__main__":
    main()
