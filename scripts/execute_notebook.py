"""Execute examples/tutorial.ipynb top to bottom in a fresh kernel and store it with its outputs.

    PYTHONPATH=src python scripts/execute_notebook.py     # about a minute on 2 cores

The notebook is committed executed, so that it reads with its figures on GitHub; the tests
(tests/test_notebook.py) execute it again and check what it prints. The kernel is this
interpreter, whatever kernels are installed, and it runs in a temporary folder.
"""

import json
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"
KERNEL = "superposition-execute"


def main() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "kernels" / KERNEL
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
        )
        km = KernelManager(
            kernel_name=KERNEL,
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(Path(tmp) / "kernels")]),
            connection_file=str(Path(tmp) / "connection.json"),
        )
        work = Path(tmp) / "cwd"
        work.mkdir()
        resources = {"metadata": {"path": str(work)}}
        NotebookClient(nb, km=km, timeout=300, resources=resources).execute()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, NOTEBOOK)
    print(f"{NOTEBOOK.name}: {NOTEBOOK.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
