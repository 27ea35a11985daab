"""The notebooks in notebooks/: committed clean, and executed end to end (quick preset, offline) so they never rot.

Each notebook runs once per session in a fresh `python3` kernel with nbclient, working directory notebooks/ (so
the notebooks must find the repository themselves); parameters are injected papermill-style by rewriting the
assignments of the cell tagged "parameters". Colab-only cells are switched off by `IN_COLAB` being False.
"""

import json
import os
import re
import tomllib

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
QUICKSTART = os.path.join(NOTEBOOKS, "zssr_quickstart.ipynb")
PORTING = os.path.join(NOTEBOOKS, "porting_from_tf1.ipynb")
CELL_TIMEOUT_S = 300


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tagged(notebook, tag):
    cells = [c for c in notebook["cells"] if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def source(cell):
    return joined(cell["source"])


def set_parameters(notebook, **values):
    """Rewrites `NAME = ...` lines of the parameters cell (papermill's injection, without papermill)."""
    cell = tagged(notebook, "parameters")
    lines = source(cell).split("\n")
    for name, value in values.items():
        matches = [i for i, line in enumerate(lines) if re.match(rf"{name}\s*=", line)]
        assert len(matches) == 1, f"parameter {name} not assigned exactly once in the parameters cell"
        lines[matches[0]] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines)


def joined(text):
    """A notebook string field: one string, or a list of lines as nbformat writes multi-line strings."""
    return text if isinstance(text, str) else "".join(text)


def output_text(cell):
    """Everything the cell printed on stdout."""
    return "".join(joined(o["text"]) for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def repository_url():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


@pytest.mark.parametrize("path", [QUICKSTART, PORTING], ids=os.path.basename)
def test_committed_clean(path):
    """Committed with outputs cleared, a tagged parameters cell that defaults to the quick preset, no addresses but
    the project's own: an "Open in Colab" badge for this notebook and the repository Colab installs from."""
    notebook = load_json(path)
    repo = repository_url()
    owner_name = repo.removeprefix("https://github.com/")
    badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research."
             f"google.com/github/{owner_name}/blob/main/notebooks/{os.path.basename(path)})")
    assert badge in source(notebook["cells"][0])
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
        rest = source(cell).replace(badge, "").replace(f'os.environ.get("ZSSR_REPO_URL", "{repo}")', "")
        assert "://" not in rest, "no network addresses in notebooks but the project's"
    parameters = source(tagged(notebook, "parameters"))
    assert f'REPO_URL = os.environ.get("ZSSR_REPO_URL", "{repo}")' in parameters
    assert re.search(r"^IN_COLAB = \"google\.colab\" in sys\.modules", parameters, re.MULTILINE)
    assert re.search(r"^PRESET = \"quick\"", parameters, re.MULTILINE)


@pytest.fixture(scope="module")
def execute(tmp_path_factory):
    """Runs a notebook with parameters in a fresh kernel; returns the executed notebook (dict form)."""
    try:
        import ipykernel  # noqa: F401
        import nbclient
        import nbformat
    except ImportError as e:
        pytest.skip(f"executing notebooks needs nbclient and ipykernel (pip install -e '.[test]'): {e}")

    executed = {}

    def run(path, **parameters):
        if path not in executed:
            notebook = nbformat.read(path, as_version=4)
            set_parameters(notebook, **parameters)
            # The notebook must find the repository from notebooks/ by itself: no $ZSSR_REPO. It imports this
            # checkout's zssr_tf, whatever is installed.
            env = {k: v for k, v in os.environ.items() if k != "ZSSR_REPO"}
            env.update(TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="module://matplotlib_inline.backend_inline",
                       PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
            client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                             resources={"metadata": {"path": NOTEBOOKS}})
            try:
                client.execute(env=env)
            except nbclient.exceptions.CellExecutionError as e:
                pytest.fail(f"{os.path.basename(path)} failed:\n{e}")
            executed[path] = json.loads(nbformat.writes(notebook))
        return executed[path]

    run.tmp = tmp_path_factory.mktemp("notebook_results")
    return run


def assert_no_errors(notebook):
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{output.get('ename')}: {output.get('evalue')}"


@pytest.mark.slow
def test_quickstart_runs(execute):
    # A made-up depth map for the DGDML-SR section: the left of the example near, the right far.
    depth = execute.tmp / "astronaut_depth.npy"
    np.save(depth, np.tile(np.arange(1.0, 129.0), (128, 1)))
    notebook = execute(QUICKSTART, PRESET="quick", OUTPUT_DIR=str(execute.tmp), SEED=0, ZSRGAN_PRESET="zsrgan_quick",
                       DGDML_PRESET="dgdml_quick", DEPTH_MAP=str(depth), PRETRAIN_STEPS=10,
                       KERNELGAN_ITERS=30)
    assert_no_errors(notebook)
    for tag in ("comparison", "curves"):
        outputs = tagged(notebook, tag)["outputs"]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"no figure in the {tag!r} cell"
    match = re.search(r"PSNR-Y bicubic: (\d+\.\d\d) dB +ZSSR: (\d+\.\d\d) dB", output_text(tagged(notebook, "metrics")))
    assert match, "no metrics line"
    bicubic, zssr = map(float, match.groups())
    assert zssr > bicubic
    assert os.path.isfile(execute.tmp / "astronaut_zssr_X2.00X2.00.png")
    assert os.path.isfile(execute.tmp / "astronaut_log.json")
    # The ZSRGAN section (its quick preset): its own output, a figure and both PSNRs.
    assert os.path.isfile(execute.tmp / "astronaut_zsrgan_X2.00X2.00.png")
    gan_cell = tagged(notebook, "zsrgan")
    assert any("image/png" in o.get("data", {}) for o in gan_cell["outputs"]), "no figure in the ZSRGAN cell"
    assert re.search(r"PSNR-Y ZSSR: \d+\.\d\d dB +ZSRGAN: \d+\.\d\d dB", output_text(gan_cell))
    assert "discriminator_loss" in output_text(gan_cell)
    # The DGDML-SR section: its output, the depth map it was given, its patch counts, a figure and both PSNRs.
    assert os.path.isfile(execute.tmp / "astronaut_dgdml_X2.00X2.00.png")
    dg_cell = tagged(notebook, "dgdml")
    assert any("image/png" in o.get("data", {}) for o in dg_cell["outputs"]), "no figure in the DGDML-SR cell"
    assert re.search(r"depth: given; \d+ HR patches \(32 px\), \d+ LR patches \(16 px\)", output_text(dg_cell))
    assert re.search(r"PSNR-Y ZSSR: \d+\.\d\d dB +DGDML-SR: \d+\.\d\d dB", output_text(dg_cell))
    # The course report's variants: pixel shuffle and a start pretrained on other images, each with its PSNR.
    variants = output_text(tagged(notebook, "variants"))
    assert "pretrained" in variants and "for 10 steps" in variants
    assert re.search(r"pixel shuffle: \d+\.\d\d dB +pretrained start: \d+\.\d\d dB", variants)
    assert os.path.isfile(execute.tmp / "variants" / "pixel_shuffle" / "astronaut_zssr_X2.00X2.00.png")
    # The estimated kernel: its error against the true one, the three ZSSR runs' PSNRs and the kernels' figure.
    kernel_cell = tagged(notebook, "kernel")
    assert re.search(r"\(30 iterations\); error against the true kernel \d\.\d{4}", output_text(kernel_cell))
    assert re.search(r"assuming bicubic: \d+\.\d\d dB +estimated kernel: \d+\.\d\d dB +true kernel: \d+\.\d\d dB",
                     output_text(kernel_cell))
    assert any("image/png" in o.get("data", {}) for o in kernel_cell["outputs"]), "no figure in the kernel cell"


@pytest.mark.slow
def test_porting_runs(execute):
    notebook = execute(PORTING, PRESET="quick", SEED=0)
    assert_no_errors(notebook)
    text = output_text(tagged(notebook, "psnr"))
    values = dict(re.findall(r"PSNR-Y (bicubic interpolation|ZSSR with the given kernel): +(\d+\.\d\d) dB", text))
    assert len(values) == 2, f"PSNR lines missing:\n{text}"
    assert float(values["ZSSR with the given kernel"]) > float(values["bicubic interpolation"])
